package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Size   int
	Delay  time.Duration
	Ratio  float64
	On     bool
	Hosts  []string
	Mode   string
	Secret string
}

func sampleSet(s *sample, sources Sources) *Set {
	set := NewSet("dktscore test", sources)
	Int(set, &s.Size, Spec{Env: "SIZE", Flag: "size", Default: "4", Help: "a size"}).Check(AtLeast(1))
	Duration(set, &s.Delay, Spec{Env: "DELAY", Flag: "delay", Default: "50ms", Help: "a delay"}).Check(Positive[time.Duration])
	Float(set, &s.Ratio, Spec{Env: "RATIO", Flag: "ratio", Default: "1.5", Help: "a ratio"})
	Bool(set, &s.On, Spec{Env: "ON", Flag: "on", Help: "a switch"})
	List(set, &s.Hosts, Spec{Env: "HOSTS", Flag: "hosts", Default: "a:1,b:2", Help: "hosts"})
	OneOf(set, &s.Mode, []string{"fast", "slow"}, Spec{Env: "MODE", Flag: "mode", Default: "fast", Help: "a mode"})
	String(set, &s.Secret, Spec{Env: "SECRET", Help: "set only by the environment"})
	set.Check(func() error {
		if s.Size > 10 && s.Mode == "fast" {
			return errors.New("DKTSCORE_SIZE above 10 needs DKTSCORE_MODE slow")
		}
		return nil
	})
	return set
}

func TestResolveLayersDefaultsEnvironmentAndFlags(t *testing.T) {
	var s sample
	_, err := sampleSet(&s, FromEnvironment).Resolve([]string{"--size", "7", "--on", "--hosts=x:1"},
		[]string{"DKTSCORE_SIZE=5", "DKTSCORE_DELAY=2s", "DKTSCORE_MODE=slow", "DKTSCORE_SECRET=s3"})
	if err != nil {
		t.Fatal(err)
	}
	want := sample{Size: 7, Delay: 2 * time.Second, Ratio: 1.5, On: true, Hosts: []string{"x:1"}, Mode: "slow", Secret: "s3"}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("resolved %+v, want %+v (flag over variable over default)", s, want)
	}
}

func TestFlagsOnlySetsIgnoreTheEnvironment(t *testing.T) {
	var s sample
	set := NewSet("dktscore test", FlagsOnly)
	Int(set, &s.Size, Spec{Env: "SIZE", Flag: "size", Default: "4", Help: "a size"})
	res, err := set.Resolve(nil, []string{"DKTSCORE_SIZE=9", "DKTSCORE_TYPO=1"})
	if err != nil || s.Size != 4 || len(res.Unknown) != 0 {
		t.Fatalf("size %d, unknown %v, err %v: want the default, no warnings", s.Size, res.Unknown, err)
	}
	if got := set.Lookup("size").Name(); got != "--size" {
		t.Errorf("a flags-only setting is named %q, want --size", got)
	}
	if env := set.Environ(); len(env) != 0 {
		t.Errorf("a flags-only set renders variables %v", env)
	}
}

func TestEveryProblemIsReportedOnceAndByItsName(t *testing.T) {
	var s sample
	_, err := sampleSet(&s, FromEnvironment).Resolve([]string{"--delay", "0s", "--ratio", "wide", "stray"},
		[]string{"DKTSCORE_SIZE=lots", "DKTSCORE_MODE=medium", "DKTSCORE_RATIO=2"})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`DKTSCORE_SIZE: "lots" is not an integer`,
		`DKTSCORE_MODE: "medium" is not fast or slow`,
		`invalid value "wide" for flag -ratio`,
		`DKTSCORE_DELAY (--delay) 0s must be positive`,
		`unexpected argument "stray"`,
	}
	for _, w := range want {
		found := 0
		for _, l := range lines {
			if strings.Contains(l, w) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("%q appears %d times, want once:\n%s", w, found, err)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("%d problems, want %d (a value that did not parse is not judged again):\n%s", len(lines), len(want), err)
	}
}

func TestAFlagReplacesABadVariable(t *testing.T) {
	var s sample
	if _, err := sampleSet(&s, FromEnvironment).Resolve([]string{"--size", "3"}, []string{"DKTSCORE_SIZE=lots"}); err != nil || s.Size != 3 {
		t.Fatalf("size %d, err %v; want the flag's 3 and no problem", s.Size, err)
	}
}

func TestChecksOfSeveralSettingsRun(t *testing.T) {
	var s sample
	_, err := sampleSet(&s, FromEnvironment).Resolve([]string{"--size", "11"}, nil)
	if err == nil || !strings.Contains(err.Error(), "needs DKTSCORE_MODE slow") {
		t.Fatalf("err %v, want the set's own check", err)
	}
}

func TestEnvironRoundTrips(t *testing.T) {
	var parent, child sample
	if _, err := sampleSet(&parent, FromEnvironment).Resolve([]string{"--size", "9", "--on", "--hosts", "h:1,h:2", "--mode", "slow"},
		[]string{"DKTSCORE_SECRET=x", "DKTSCORE_DELAY=1m30s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sampleSet(&child, FromEnvironment).Resolve(nil, sampleSet(&parent, FromEnvironment).Environ()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parent, child) {
		t.Fatalf("child %+v, parent %+v", child, parent)
	}
}

func TestUnknownVariablesAreWarnedWithASuggestion(t *testing.T) {
	var s sample
	res, err := sampleSet(&s, FromEnvironment).Resolve(nil, []string{"DKTSCORE_SIZ=3", "dktscore_mode=slow", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Unknown{{Name: "DKTSCORE_SIZ", Suggestion: "DKTSCORE_SIZE"}, {Name: "dktscore_mode", Suggestion: "DKTSCORE_MODE"}}
	if !reflect.DeepEqual(res.Unknown, want) {
		t.Fatalf("unknown %+v, want %+v", res.Unknown, want)
	}
}

func TestHelpListsEverySettingAndStopsResolution(t *testing.T) {
	var s sample
	set := sampleSet(&s, FromEnvironment)
	res, err := set.Resolve([]string{"--size", "nope", "--help"}, nil)
	if !res.Help || err != nil {
		t.Fatalf("help %t err %v; --help wins over other problems", res.Help, err)
	}
	var b bytes.Buffer
	set.WriteUsage(&b, "intro\n")
	for _, line := range []string{"  DKTSCORE_SIZE, --size N (default 4)", "        a size", "  DKTSCORE_SECRET\n        set only by the environment",
		"  DKTSCORE_MODE, --mode fast|slow (default fast)", "  DKTSCORE_ON, --on\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("usage lacks %q:\n%s", line, b.String())
		}
	}
}

func TestDeclaringASettingTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a second declaration of --size did not panic")
		}
	}()
	var a, b int
	set := NewSet("dktscore test", FlagsOnly)
	Int(set, &a, Spec{Flag: "size", Help: "a"})
	Int(set, &b, Spec{Flag: "size", Help: "b"})
}

// CheckModel, run once the model is loaded, names the settings as the
// declaring command does, though its Set is gone by then.
func TestBatchingCheckedAgainstTheModelNamesTheSetting(t *testing.T) {
	for _, c := range []struct {
		sources Sources
		name    string
	}{{FromEnvironment, "DKTSCORE_MAX_PADDED_STEPS (--max-padded-steps) 10000000 is too large for a model of 124 skills"},
		{FlagsOnly, "--max-padded-steps 10000000 is too large for a model of 124 skills"}} {
		var b Batching
		set := NewSet("dktscore test", c.sources)
		DeclareBatching(set, &b, Measured)
		if _, err := set.Resolve([]string{"--max-padded-steps=10000000", "--max-delay=1ms"}, nil); err != nil {
			t.Fatal(err) // fine for a model of one skill
		}
		resolved := b // the command keeps a copy of its config, not the Set
		if err := resolved.CheckModel(124); err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("CheckModel(124) = %v, want %q", err, c.name)
		}
	}
}
