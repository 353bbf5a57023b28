package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// envPrefix starts every variable serve reads.
const envPrefix = "DKTSCORE_"

// envVar describes one variable of serveConfig, read from its struct tags:
// env (the name after the prefix), envDefault, and help (what it means). A
// field added to serveConfig shows up in `serve --help` and in the unknown-
// variable check without further code.
type envVar struct {
	Name    string // with the prefix
	Field   string // Go field name, as caarlos0/env names it in errors
	Type    reflect.Type
	Default string   // "" when none
	Help    string   // "" when the field has no help tag (a test forbids that)
	Flags   []string // flags that override it
}

// serveEnvVars lists serveConfig's variables in field order. Nested structs
// are walked with their envPrefix tag, as caarlos0/env does.
func serveEnvVars() []envVar {
	var out []envVar
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			if name == "" {
				if f.Type.Kind() == reflect.Struct {
					walk(f.Type, prefix+f.Tag.Get("envPrefix"))
				}
				continue
			}
			out = append(out, envVar{Name: prefix + name, Field: f.Name, Type: f.Type,
				Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
		}
	}
	walk(reflect.TypeFor[serveConfig](), envPrefix)
	return out
}

var envNamePattern = regexp.MustCompile(envPrefix + `[A-Z0-9_]+`)

// withFlags fills in which flags override which variable: a flag's usage
// text names its variable, e.g. "(DKTSCORE_KAFKA_GROUP)".
func withFlags(vars []envVar, fs *flag.FlagSet) []envVar {
	index := map[string]int{}
	for i, v := range vars {
		index[v.Name] = i
	}
	fs.VisitAll(func(f *flag.Flag) {
		for _, name := range envNamePattern.FindAllString(f.Usage, -1) {
			if i, ok := index[name]; ok && !slices.Contains(vars[i].Flags, f.Name) {
				vars[i].Flags = append(vars[i].Flags, f.Name)
			}
		}
	})
	return vars
}

// writeServeUsage is `dktscore serve --help`: every variable with its default
// and meaning, then the flags.
func writeServeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: dktscore serve [flags]

Scores JSON records from Kafka and publishes Arrow IPC mastery messages; bad
records go to a dead-letter topic. A record is a student's whole history by
default (--mode sequences); with --mode events (DKTSCORE_MODE=events) it is
one interaction, and each student's model state is carried from event to event
in a compacted changelog topic. HTTP on DKTSCORE_HTTP_ADDR: /healthz, /readyz,
/metrics (Prometheus, dktscore_*).

Configured by these environment variables; a flag overrides its variable.
A DKTSCORE_* variable not listed here is warned about at start. Every invalid
value is reported at once, with exit status 2.

Environment:
`)
	for _, v := range withFlags(serveEnvVars(), fs) {
		def := "unset"
		if v.Default != "" {
			def = "default " + v.Default
		}
		flags := ""
		for _, f := range v.Flags {
			flags += ", flag --" + f
		}
		fmt.Fprintf(w, "  %s (%s%s)\n        %s\n", v.Name, def, flags, v.Help)
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w) // PrintDefaults writes to the flag set's output, stderr for parse errors
	fs.PrintDefaults()
}

// envProblem is a variable whose value did not parse.
type envProblem struct {
	variable string
	err      error
}

func (p envProblem) Error() string { return p.variable + ": " + p.err.Error() }
func (p envProblem) Unwrap() error { return p.err }

// parseServeEnv reads serveConfig from environ (NAME → value). Every value
// that does not parse is reported, and its field keeps its default, so that
// the validation that follows judges only values that did parse — one bad
// variable gives one message, not two.
func parseServeEnv(environ map[string]string) (serveConfig, []envProblem) {
	opts := env.Options{Prefix: envPrefix, Environment: environ}
	cfg, err := env.ParseAsWithOptions[serveConfig](opts)
	if err == nil {
		return cfg, nil
	}
	defaults, defaultsErr := env.ParseAsWithOptions[serveConfig](env.Options{Prefix: envPrefix, Environment: map[string]string{}})
	byField := map[string]envVar{}
	for _, v := range serveEnvVars() {
		byField[v.Field] = v
	}
	var problems []envProblem
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return cfg, []envProblem{{variable: "environment", err: err}}
	}
	for _, e := range agg.Errors {
		var parse env.ParseError
		var v envVar
		known := false
		if errors.As(e, &parse) {
			v, known = byField[parse.Name]
		}
		if !known {
			problems = append(problems, envProblem{variable: "environment", err: e})
			continue
		}
		problems = append(problems, envProblem{variable: v.Name,
			err: fmt.Errorf("%q is not %s: %w", environ[v.Name], typeHint(v.Type), parse.Err)})
		if defaultsErr == nil {
			dst := reflect.ValueOf(&cfg).Elem().FieldByName(parse.Name)
			if dst.IsValid() && dst.CanSet() {
				dst.Set(reflect.ValueOf(defaults).FieldByName(parse.Name))
			}
		}
	}
	return cfg, problems
}

// typeHint says what a value of type t looks like, for parse errors.
func typeHint(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration (e.g. 50ms, 2s, 1m30s)"
	case t.Kind() == reflect.Bool:
		return "a boolean (true or false)"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice:
		return "a comma-separated list of " + strings.TrimPrefix(typeHint(t.Elem()), "a ")
	}
	return "a valid " + t.String()
}

// unknownVar is a DKTSCORE_* variable that serve does not read.
type unknownVar struct {
	Name       string
	Suggestion string // the known variable it is probably a typo of; "" when none is close
}

func (u unknownVar) String() string {
	s := u.Name + " is set but dktscore serve does not read it"
	if u.Suggestion != "" {
		s += "; did you mean " + u.Suggestion + "?"
	}
	return s
}

// unknownServeEnv lists the DKTSCORE_* variables in environ that serve does
// not read, sorted by name. A lower-case or mixed-case prefix counts too:
// Linux variables are case-sensitive, so dktscore_model is silently not
// DKTSCORE_MODEL.
func unknownServeEnv(environ map[string]string) []unknownVar {
	known := map[string]bool{}
	var names []string
	for _, v := range serveEnvVars() {
		known[v.Name] = true
		names = append(names, v.Name)
	}
	var out []unknownVar
	for name := range environ {
		if len(name) < len(envPrefix) || !strings.EqualFold(name[:len(envPrefix)], envPrefix) || known[name] {
			continue
		}
		out = append(out, unknownVar{Name: name, Suggestion: suggestEnv(name, names)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// suggestEnv returns the known name closest to name, or "" when none is
// close: within a third of the name's length in edits, or the same name
// without a middle part (DKTSCORE_INPUT_TOPIC for DKTSCORE_KAFKA_INPUT_TOPIC).
func suggestEnv(name string, known []string) string {
	upper := strings.ToUpper(name)
	rest := strings.TrimPrefix(upper, envPrefix)
	best, bestDist := "", len(upper)
	for _, k := range known {
		if d := editDistance(upper, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist <= max(2, len(rest)/3) {
		return best
	}
	for _, k := range known {
		if strings.HasSuffix(k, "_"+rest) || strings.HasSuffix(rest, "_"+strings.TrimPrefix(k, envPrefix)) {
			return k
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b (bytes; the names
// are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// environMap turns os.Environ()-style "NAME=value" entries into a map.
func environMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// configureServe turns the environment and the command line into a valid
// serveConfig. It returns done=true with the exit code when serve must not
// start: 0 after --help (printed on stdout), 2 when the configuration is
// invalid — every problem in one message on stderr, parse errors and
// validation together, with the unknown variables (often the cause) after
// them. Unknown variables in a valid configuration are only warnings, logged
// once the logger exists.
func configureServe(args, environ []string, stdout, stderr io.Writer) (cfg serveConfig, unknown []unknownVar, code int, done bool) {
	vars := environMap(environ)
	cfg, envProblems := parseServeEnv(vars)
	unknown = unknownServeEnv(vars)

	if cfg.SupervisedWorker != "" {
		unknown = nil // the supervising parent warned about this environment already
	}

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	// A bad flag is reported below with everything else, not printed alone.
	fs.SetOutput(io.Discard)
	cfg.flags(fs)
	fs.Usage = func() {} // --help is answered below, on stdout
	flagProblems, help := parseServeFlags(fs, args)
	if help {
		writeServeUsage(stdout, fs)
		return cfg, nil, 0, true
	}

	// A flag overrides its variable, so a bad value it replaced is no problem.
	overridden := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		for _, name := range envNamePattern.FindAllString(f.Usage, -1) {
			overridden[name] = true
		}
	})
	problems := flagProblems
	for _, p := range envProblems {
		if !overridden[p.variable] {
			problems = append(problems, p)
		}
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q: serve takes only flags", fs.Arg(0)))
	}
	problems = append(problems, loggingProblems(cfg.LogFormat, cfg.LogLevel)...)
	if err := cfg.validate(); err != nil {
		problems = append(problems, err)
	}
	if len(problems) == 0 {
		return cfg, unknown, 0, false
	}
	fmt.Fprintf(stderr, "dktscore serve: invalid configuration:\n")
	for _, line := range strings.Split(errors.Join(problems...).Error(), "\n") {
		fmt.Fprintf(stderr, "  - %s\n", line)
	}
	for _, u := range unknown {
		fmt.Fprintf(stderr, "  - warning: %s\n", u)
	}
	fmt.Fprintln(stderr, "Run 'dktscore serve --help' for every variable with its default and meaning.")
	return cfg, unknown, 2, true
}

// parseServeFlags parses args into fs and returns every bad flag, not just
// the first: after an error it goes on with the arguments that follow (the
// flag package has consumed the bad one). help is true when --help or -h
// appears among the flags.
func parseServeFlags(fs *flag.FlagSet, args []string) (problems []error, help bool) {
	// A flag whose value fails to parse may still have overwritten its field
	// (the int flags store 0 first), and that zero would be reported again by
	// the validation. Put back the value of every flag that was not set.
	before := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = f.Value.String() })
	defer func() {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		fs.VisitAll(func(f *flag.Flag) {
			if !set[f.Name] && f.Value.String() != before[f.Name] {
				f.Value.Set(before[f.Name])
			}
		})
	}()
	for {
		err := fs.Parse(args)
		switch {
		case err == nil:
			return problems, false
		case errors.Is(err, flag.ErrHelp):
			return problems, true
		}
		problems = append(problems, fmt.Errorf("command line: %w", err))
		if len(fs.Args()) >= len(args) {
			// Nothing consumed ("bad flag syntax: ---x"): stop, and leave no
			// arguments behind to be reported again as unexpected.
			fs.Parse(nil)
			return problems, false
		}
		args = fs.Args()
	}
}

// environ renders c as DKTSCORE_* assignments, one per variable of
// serveConfig. The supervisor hands them to its children, so a child runs the
// configuration the parent resolved from flags and environment together (a
// child is started with no flags: `--mode events` given to the parent must
// still reach it).
func (c serveConfig) environ() []string {
	var out []string
	value := reflect.ValueOf(c)
	for _, v := range serveEnvVars() {
		field := value.FieldByName(v.Field)
		var text string
		switch x := field.Interface().(type) {
		case []string:
			text = strings.Join(x, ",")
		case float64:
			text = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			text = fmt.Sprint(x)
		}
		out = append(out, v.Name+"="+text)
	}
	return out
}
