package main

import (
	"bytes"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/serving"
)

// problemLines are the "  - " lines of an invalid-configuration message,
// warnings left out.
func problemLines(stderr string) []string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "  - ") && !strings.HasPrefix(line, "  - warning: ") {
			out = append(out, line)
		}
	}
	return out
}

func TestBadEnvironmentsAreReportedAllAtOnce(t *testing.T) {
	cases := []struct {
		name     string
		env      []string
		args     []string
		want     []string // substrings of the one message
		problems int      // problem lines expected (each bad value once)
	}{
		{"bad duration", []string{"DKTSCORE_MAX_DELAY=soon"}, nil,
			[]string{`DKTSCORE_MAX_DELAY: "soon" is not a duration`}, 1},
		{"bad int", []string{"DKTSCORE_BATCH_SIZE=lots"}, nil,
			[]string{`DKTSCORE_BATCH_SIZE: "lots" is not an integer`}, 1},
		{"bad float", []string{"DKTSCORE_BUCKET_GROWTH=wide"}, nil,
			[]string{`DKTSCORE_BUCKET_GROWTH: "wide" is not a number`}, 1},
		{"bad bool", []string{"DKTSCORE_GPU_ALLOW_GROWTH=maybe"}, nil,
			[]string{`DKTSCORE_GPU_ALLOW_GROWTH: "maybe" is not a boolean`}, 1},
		{"negative sessions", []string{"DKTSCORE_SESSIONS=-1"}, nil,
			[]string{"DKTSCORE_SESSIONS (--sessions) -1 must be at least 1"}, 1},
		{"bad delivery mode", []string{"DKTSCORE_DELIVERY=at-most-once"}, nil,
			[]string{`DKTSCORE_DELIVERY: "at-most-once" is not at-least-once or exactly-once`}, 1},
		{"fraction out of range", []string{"DKTSCORE_GPU_MEMORY_FRACTION=1.5"}, nil,
			[]string{"DKTSCORE_GPU_MEMORY_FRACTION (--gpu-memory-fraction) 1.5 is outside (0, 1]"}, 1},
		{"bad log settings", []string{"DKTSCORE_LOG_FORMAT=xml", "DKTSCORE_LOG_LEVEL=loud"}, nil,
			[]string{`DKTSCORE_LOG_FORMAT: "xml" is not text or json`, `DKTSCORE_LOG_LEVEL: "loud" is not debug, info, warn or error`}, 2},
		{"bad flag value beside bad variables", []string{"DKTSCORE_MAX_POLL_RECORDS=0"}, []string{"--sessions", "0"},
			[]string{"DKTSCORE_MAX_POLL_RECORDS (--max-poll-records) 0 must be positive", "DKTSCORE_SESSIONS (--sessions) 0 must be at least 1"}, 2},
		{"stray argument", nil, []string{"extra"}, []string{`unexpected argument "extra"`}, 1},
		{"unparsable flag value beside bad variables", []string{"DKTSCORE_MAX_POLL_RECORDS=0", "DKTSCORE_MAX_DELAY=soon"},
			[]string{"--sessions", "lots", "--batch-size=many", "--group", "g"},
			[]string{`invalid value "lots" for flag -sessions`, `invalid value "many" for flag -batch-size`,
				"DKTSCORE_MAX_POLL_RECORDS (--max-poll-records) 0 must be positive", `DKTSCORE_MAX_DELAY: "soon"`}, 4},
		{"unknown flag beside a bad variable", []string{"DKTSCORE_SESSIONS=0"}, []string{"--sesions", "2"},
			[]string{"flag provided but not defined: -sesions", "DKTSCORE_SESSIONS (--sessions) 0 must be at least 1", `unexpected argument "2"`}, 3},
		{"model version not a number", []string{"DKTSCORE_MODEL_VERSION=latest"}, nil,
			[]string{`DKTSCORE_MODEL_VERSION (--model-version) latest is not a version number`}, 1},
		{"negative model version", nil, []string{"--model-version", "-1"},
			[]string{`DKTSCORE_MODEL_VERSION (--model-version) -1 is not a version number`}, 1},
		// batching's own messages name Go fields; an operator must read variables and flags.
		{"batching limits", []string{"DKTSCORE_BATCH_SIZE=0", "DKTSCORE_MAX_DELAY=0s", "DKTSCORE_MAX_PADDED_STEPS=-5", "DKTSCORE_BUCKET_GROWTH=3"}, nil,
			[]string{"DKTSCORE_BATCH_SIZE (--batch-size) 0 must be at least 1", "DKTSCORE_MAX_DELAY (--max-delay) 0s must be positive",
				"DKTSCORE_MAX_PADDED_STEPS (--max-padded-steps) -5 must be positive", "DKTSCORE_BUCKET_GROWTH (--bucket-growth) 3 must be in (1, 2]"}, 4},
		{"padded-steps budget beyond the input tensor", []string{"DKTSCORE_MAX_PADDED_STEPS=2000000000"}, nil,
			[]string{"DKTSCORE_MAX_PADDED_STEPS (--max-padded-steps) 2000000000 is too large"}, 1},
		{"everything at once, with the typo that explains it",
			[]string{"DKTSCORE_MAX_DELAY=soon", "DKTSCORE_BATCH_SIZE=lots", "DKTSCORE_SESSIONS=-1",
				"DKTSCORE_DELIVERY=at-most-once", "DKTSCORE_GPU_MEMORY_FRACTION=1.5", "DKTSCORE_SESIONS=4",
				"DKTSCORE_KAFKA_INPUT_TOPIC=same", "DKTSCORE_KAFKA_OUTPUT_TOPIC=same"}, nil,
			[]string{`DKTSCORE_MAX_DELAY: "soon"`, `DKTSCORE_BATCH_SIZE: "lots"`, "DKTSCORE_SESSIONS (--sessions) -1", "at-most-once",
				"DKTSCORE_GPU_MEMORY_FRACTION (--gpu-memory-fraction) 1.5", "also an output topic",
				"warning: DKTSCORE_SESIONS is set but dktscore serve does not read it; did you mean DKTSCORE_SESSIONS?"}, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			_, _, code, done := configureServe(c.args, c.env, &stdout, &stderr)
			if !done || code != 2 {
				t.Fatalf("done=%v exit %d, want exit 2; stderr:\n%s", done, code, stderr.String())
			}
			msg := stderr.String()
			if n := strings.Count(msg, "invalid configuration"); n != 1 {
				t.Errorf("%d messages, want one:\n%s", n, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message does not contain %q:\n%s", w, msg)
				}
			}
			for _, goName := range []string{"MaxBatchSize", "MaxDelay", "MaxPaddedSteps", "BucketGrowth", "leave it 0"} {
				if strings.Contains(msg, goName) {
					t.Errorf("message names Go field %q instead of a variable:\n%s", goName, msg)
				}
			}
			// A value that failed to parse must not be judged again as its zero value.
			if got := problemLines(msg); len(got) != c.problems {
				t.Errorf("%d problems, want %d:\n%s", len(got), c.problems, msg)
			}
		})
	}
}

func TestValidEnvironmentsStartWithWarningsOnly(t *testing.T) {
	cases := []struct {
		name    string
		env     []string
		args    []string
		unknown []config.Unknown
	}{
		{"defaults", nil, nil, nil},
		{"unknown variable", []string{"DKTSCORE_FROBNICATE=1"}, nil, []config.Unknown{{Name: "DKTSCORE_FROBNICATE"}}},
		{"typo'd name", []string{"DKTSCORE_SESIONS=4"}, nil,
			[]config.Unknown{{Name: "DKTSCORE_SESIONS", Suggestion: "DKTSCORE_SESSIONS"}}},
		{"middle part left out", []string{"DKTSCORE_INPUT_TOPIC=x"}, nil,
			[]config.Unknown{{Name: "DKTSCORE_INPUT_TOPIC", Suggestion: "DKTSCORE_KAFKA_INPUT_TOPIC"}}},
		{"lower-case prefix", []string{"dktscore_model=/m"}, nil,
			[]config.Unknown{{Name: "dktscore_model", Suggestion: "DKTSCORE_MODEL"}}},
		{"flag replaces a bad variable", []string{"DKTSCORE_SESSIONS=many"}, []string{"--sessions", "3"}, nil},
		{"pinned model version", []string{"DKTSCORE_MODEL_VERSION=12"}, nil, nil},
		// The supervisor's parent already warned about its environment.
		{"supervised child", []string{"DKTSCORE_SUPERVISED_WORKER=gpu0", "DKTSCORE_SESIONS=4"}, nil, nil},
		{"other programs' variables are none of our business", []string{"KAFKA_BROKERS=x", "DKTSCOREX=1"}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cfg, unknown, code, done := configureServe(c.args, c.env, &stdout, &stderr)
			if done {
				t.Fatalf("exit %d, want a valid configuration; stderr:\n%s", code, stderr.String())
			}
			if !reflect.DeepEqual(unknown, c.unknown) {
				t.Errorf("unknown variables %+v, want %+v", unknown, c.unknown)
			}
			if c.name == "flag replaces a bad variable" && cfg.Sessions != 3 {
				t.Errorf("sessions %d, want the flag's 3", cfg.Sessions)
			}
		})
	}
}

func TestServeHelpListsEveryVariableWithDefaultAndMeaning(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
	help := stdout.String()
	lines := strings.Split(help, "\n")
	var cfg serving.Config
	settings := serving.Settings(&cfg).Settings()
	if len(settings) < 30 {
		t.Fatalf("serve declares %d settings; the declaration is broken", len(settings))
	}
	for _, st := range settings {
		listed := false
		for i, line := range lines {
			first := strings.TrimPrefix(line, "  ")
			first, _, _ = strings.Cut(first, ",")
			first, _, _ = strings.Cut(first, " ")
			if first != st.EnvName() && (st.Env != "" || first != "--"+st.Flag) {
				continue
			}
			listed = true
			if st.Flag != "" && !regexp.MustCompile(`--`+st.Flag+`\b`).MatchString(line) {
				t.Errorf("%s is listed without its flag --%s: %s", st.Name(), st.Flag, line)
			}
			if st.Default != "" && !strings.Contains(line, "(default "+st.Default+")") {
				t.Errorf("%s is listed without its default %q: %s", st.Name(), st.Default, line)
			}
			if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != st.Help {
				t.Errorf("%s is not followed by its meaning %q", st.Name(), st.Help)
			}
		}
		if !listed {
			t.Errorf("serve --help does not list %s", st.Name())
		}
	}
	if stderr.Len() > 0 {
		t.Errorf("serve --help wrote to stderr:\n%s", stderr.String())
	}
	if !strings.Contains(help, "--mode events") {
		t.Error("serve --help does not mention event mode (--mode events)")
	}
}

// The supervisor starts its children with no flags; the config they parse
// back from environ() must be the parent's, flags included.
func TestEnvironCarriesTheResolvedConfigToChildren(t *testing.T) {
	cfg, _, code, done := configureServe([]string{"--mode", "events", "--brokers", "a:9092,b:9092", "--max-delay", "75ms",
		"--gpu-memory-fraction", "0.45", "--model-version", "3"}, []string{"DKTSCORE_SESSIONS=3", "DKTSCORE_GPU_ALLOW_GROWTH=true"},
		io.Discard, io.Discard)
	if done {
		t.Fatalf("configureServe stopped with exit %d", code)
	}
	var child serving.Config
	if _, err := serving.Settings(&child).Resolve(nil, serving.Settings(&cfg).Environ()); err != nil {
		t.Fatalf("the child cannot parse what the parent rendered: %v", err)
	}
	if !reflect.DeepEqual(child, cfg) {
		t.Fatalf("child config differs from the parent's:\nchild  %+v\nparent %+v", child, cfg)
	}
	if cfg.Mode != "events" || cfg.Sessions != 3 || len(cfg.Kafka.Brokers) != 2 {
		t.Fatalf("flags or environment not applied: %+v", cfg)
	}
}

// Supervised children must not share a transactional id: the broker fences
// all but the latest producer of an id, so two children with one id would
// abort each other's transactions forever.
func TestChildEnvGivesEachWorkerItsOwnTransactionalID(t *testing.T) {
	plan, err := gpu.Plan([]gpu.Device{{Index: 0, UUID: "GPU-a"}, {Index: 1, UUID: "GPU-b"}}, gpu.Selection{All: true}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     []string
		wantIDs []string // per child; "" = unset (the child derives GROUP-HOSTNAME-PID)
	}{
		{"set", []string{"DKTSCORE_DELIVERY=exactly-once", "DKTSCORE_KAFKA_TRANSACTIONAL_ID=scorer-7"},
			[]string{"scorer-7-" + plan[0].Name(), "scorer-7-" + plan[1].Name()}},
		{"unset", []string{"DKTSCORE_DELIVERY=exactly-once"}, []string{"", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, code, done := configureServe(nil, c.env, io.Discard, io.Discard)
			if done {
				t.Fatalf("configureServe stopped with exit %d", code)
			}
			for i, p := range plan {
				// The parent's own environment holds the unsuffixed id too; the child's entry must win.
				var child serving.Config
				if _, err := serving.Settings(&child).Resolve(nil, serving.ChildEnv(c.env, cfg, p, "127.0.0.1:9000")); err != nil {
					t.Fatalf("child %s cannot parse its environment: %v", p.Name(), err)
				}
				if child.TransactionalID != c.wantIDs[i] {
					t.Errorf("child %s transactional id %q, want %q", p.Name(), child.TransactionalID, c.wantIDs[i])
				}
				if child.SupervisedWorker != p.Name() || child.HTTPAddr != "127.0.0.1:9000" {
					t.Errorf("child %s: supervised worker %q, http %q", p.Name(), child.SupervisedWorker, child.HTTPAddr)
				}
			}
		})
	}
}
