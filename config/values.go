package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// value parses text into a bound field. Set leaves the field unchanged when
// the text does not parse, so a bad value never leaves a half-set field
// behind for a later check to misjudge.
type value interface {
	Set(string) error
	String() string
	hint() string        // what a valid value looks like, for parse errors: "an integer"
	placeholder() string // after the flag name in help: " N"
}

// Var is a declared setting bound to a field of type T; Check adds
// validation to it.
type Var[T any] struct {
	*Setting
	p *T
}

// Check adds a check of the setting's value. The message is the problem
// after the setting's name and value, e.g. "must be at least 1; set ...":
// Resolve reports "DKTSCORE_SESSIONS (--sessions) 0 must be at least 1".
func (v Var[T]) Check(check func(T) error) Var[T] {
	v.checks = append(v.checks, func() error { return check(*v.p) })
	return v
}

type scalar[T any] struct {
	p                *T
	parse            func(string) (T, error)
	format           func(T) string
	hintText, holder string
}

func (s *scalar[T]) Set(text string) error {
	v, err := s.parse(text)
	if err != nil {
		return err
	}
	*s.p = v
	return nil
}

func (s *scalar[T]) String() string { return s.format(*s.p) }
func (s *scalar[T]) hint() string        { return s.hintText }
func (s *scalar[T]) placeholder() string { return s.holder }

func declare[T any](set *Set, p *T, spec Spec, v *scalar[T]) Var[T] {
	v.p = p
	return Var[T]{Setting: set.add(spec, v), p: p}
}

// String declares a text setting.
func String(set *Set, p *string, spec Spec) Var[string] {
	return declare(set, p, spec, &scalar[string]{parse: func(s string) (string, error) { return s, nil },
		format: func(s string) string { return s }, hintText: "text", holder: " TEXT"})
}

// Int declares an integer setting.
func Int(set *Set, p *int, spec Spec) Var[int] {
	return declare(set, p, spec, &scalar[int]{parse: func(s string) (int, error) {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 0)
		return int(v), err
	}, format: strconv.Itoa, hintText: "an integer", holder: " N"})
}

// Float declares a number setting.
func Float(set *Set, p *float64, spec Spec) Var[float64] {
	return declare(set, p, spec, &scalar[float64]{parse: func(s string) (float64, error) {
		return strconv.ParseFloat(strings.TrimSpace(s), 64)
	}, format: func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }, hintText: "a number", holder: " X"})
}

// Bool declares a true/false setting; its flag needs no value (--gpu-allow-growth).
func Bool(set *Set, p *bool, spec Spec) Var[bool] {
	return declare(set, p, spec, &scalar[bool]{parse: func(s string) (bool, error) { return strconv.ParseBool(strings.TrimSpace(s)) },
		format: strconv.FormatBool, hintText: "a boolean (true or false)"})
}

// Duration declares a duration setting (50ms, 2s, 1m30s).
func Duration(set *Set, p *time.Duration, spec Spec) Var[time.Duration] {
	return declare(set, p, spec, &scalar[time.Duration]{parse: func(s string) (time.Duration, error) {
		return time.ParseDuration(strings.TrimSpace(s))
	}, format: time.Duration.String, hintText: "a duration (e.g. 50ms, 2s, 1m30s)", holder: " DURATION"})
}

// List declares a comma-separated list of text.
func List(set *Set, p *[]string, spec Spec) Var[[]string] {
	return declare(set, p, spec, &scalar[[]string]{parse: func(s string) ([]string, error) {
		if s == "" {
			return nil, nil
		}
		return strings.Split(s, ","), nil
	}, format: func(v []string) string { return strings.Join(v, ",") }, hintText: "a comma-separated list", holder: " A,B"})
}

// OneOf declares a setting that takes one of a fixed set of words, e.g. a
// delivery mode; anything else does not parse, and the message lists them.
func OneOf[T ~string](set *Set, p *T, allowed []T, spec Spec) Var[T] {
	words := make([]string, len(allowed))
	for i, a := range allowed {
		words[i] = string(a)
	}
	list := strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
	if len(words) == 1 {
		list = words[0]
	}
	return declare(set, p, spec, &scalar[T]{parse: func(s string) (T, error) {
		if !slices.Contains(allowed, T(s)) {
			return "", errors.New("not " + list)
		}
		return T(s), nil
	}, format: func(v T) string { return string(v) }, hintText: list, holder: " " + strings.Join(words, "|")})
}

// AtLeast is a Check: the value must be n or more.
func AtLeast[T int | float64 | time.Duration](n T) func(T) error {
	return func(v T) error {
		if v < n {
			return fmt.Errorf("must be at least %v", n)
		}
		return nil
	}
}

// Positive is a Check: the value must be above zero.
func Positive[T int | float64 | time.Duration](v T) error {
	if v <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

// NotNegative is a Check: the value must be zero or more.
func NotNegative[T int | float64 | time.Duration](v T) error {
	if v < 0 {
		return errors.New("must not be negative")
	}
	return nil
}
