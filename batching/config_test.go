package batching

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := testConfig()
	tests := []struct {
		name string
		cfg  Config
		want []string // each must appear in the one error
	}{
		{"valid", good, nil},
		{"valid growth 2", func() Config { c := good; c.BucketGrowth = 2; return c }(), nil},
		{"zero value", Config{}, []string{"NumSkills", "MaxBatchSize", "MaxDelay", "MaxPaddedSteps"}},
		{"negative limits", Config{NumSkills: -1, MaxBatchSize: -2, MaxDelay: -time.Second, MaxPaddedSteps: -3, BucketGrowth: -1},
			[]string{"NumSkills is -1", "MaxBatchSize is -2", "MaxDelay is -1s", "MaxPaddedSteps is -3", "BucketGrowth is -1"}},
		{"no delay only", func() Config { c := good; c.MaxDelay = 0; return c }(), []string{"MaxDelay is 0s"}},
		{"growth 1", func() Config { c := good; c.BucketGrowth = 1; return c }(), []string{"BucketGrowth is 1"}},
		{"growth above 2", func() Config { c := good; c.BucketGrowth = 2.5; return c }(), []string{"BucketGrowth is 2.5"}},
		{"growth NaN", func() Config { c := good; c.BucketGrowth = math.NaN(); return c }(), []string{"BucketGrowth is NaN"}},
		{"budget too large", func() Config { c := good; c.MaxPaddedSteps = math.MaxInt32; return c }(), []string{"MaxPaddedSteps is 2147483647; is too large"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors mentioning %q", tc.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if got := len(strings.Split(msg, "\n")); got != len(tc.want) {
				t.Errorf("error has %d problems, want %d:\n%s", got, len(tc.want), msg)
			}
			if _, err := NewAssembler(tc.cfg); err == nil {
				t.Error("NewAssembler accepted an invalid config")
			}
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestValidateItem(t *testing.T) {
	tests := []struct {
		name string
		it   Item
		want string // "" = valid
	}{
		{"valid", Item{Skills: []int32{0, 4}, Correct: []int8{1, 0}}, ""},
		{"empty", Item{}, "empty sequence"},
		{"length mismatch", Item{Skills: []int32{1, 2}, Correct: []int8{1}}, "2 skills but 1 correctness"},
		{"negative skill", Item{Skills: []int32{1, -1}, Correct: []int8{1, 0}}, "step 1 has skill id -1"},
		{"skill = S", Item{Skills: []int32{5}, Correct: []int8{1}}, "skill id 5 outside [0, 5)"},
		{"correct 2", Item{Skills: []int32{1, 1, 1}, Correct: []int8{0, 1, 2}}, "step 2 has correct=2"},
		{"correct -1", Item{Skills: []int32{1}, Correct: []int8{-1}}, "correct=-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAssembler(t, testConfig())
			_, err := a.Add(tc.it, t0)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Add = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidItem) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add = %v, want ErrInvalidItem mentioning %q", err, tc.want)
			}
			if a.Pending() != 0 {
				t.Errorf("rejected item is pending")
			}
		})
	}
}
