package records

import (
	"bytes"
	"math"
	"strconv"
	"time"
)

// parseInteger reads a decimal integer; an integral float ("12.0", "1e2") is
// accepted too, since CSV and JSON exports from pandas often write ids that way.
func parseInteger(t []byte) (int64, bool) {
	if v, err := strconv.ParseInt(string(t), 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// parseFlag reads a correctness flag: 0/1 (also "0.0"/"1.0") or true/false.
func parseFlag(t []byte) (int8, bool) {
	switch {
	case bytes.EqualFold(t, []byte("true")):
		return 1, true
	case bytes.EqualFold(t, []byte("false")):
		return 0, true
	}
	v, ok := parseInteger(t)
	if !ok || (v != 0 && v != 1) {
		return 0, false
	}
	return int8(v), true
}

// tsKind separates timestamps that can be ordered against each other:
// numbers (epoch in whatever unit the file uses) and calendar times.
type tsKind uint8

const (
	tsNumber tsKind = iota + 1
	tsTime
)

// tsKey is a sortable timestamp. Integers stay exact (epoch nanoseconds
// exceed float64's 2^53); floats compare as floats.
type tsKey struct {
	kind  tsKind
	isInt bool
	i     int64
	f     float64
}

func (a tsKey) less(b tsKey) bool {
	if a.isInt && b.isInt {
		return a.i < b.i
	}
	return a.float() < b.float()
}

func (a tsKey) float() float64 {
	if a.isInt {
		return float64(a.i)
	}
	return a.f
}

// timeLayouts are tried after numbers; zone-less forms (as in ASSISTments
// exports) are read as UTC, which keeps their relative order.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

// parseTimestamp reads an integer or float epoch or an RFC3339 time.
func parseTimestamp(t []byte) (tsKey, bool) {
	s := string(t)
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return tsKey{kind: tsNumber, isInt: true, i: v}, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return tsKey{}, false
		}
		return tsKey{kind: tsNumber, f: f}, true
	}
	for _, layout := range timeLayouts {
		if tm, err := time.Parse(layout, s); err == nil {
			return timeKey(tm), true
		}
	}
	return tsKey{}, false
}

func timeKey(tm time.Time) tsKey {
	// UnixNano overflows outside 1678..2262; seconds plus fraction as float
	// keeps such (odd but parsable) times ordered.
	if y := tm.Year(); y > 1678 && y < 2262 {
		return tsKey{kind: tsTime, isInt: true, i: tm.UnixNano()}
	}
	return tsKey{kind: tsTime, f: float64(tm.Unix()) + float64(tm.Nanosecond())/1e9}
}
