// Package config declares each of dktscore's settings once — environment
// variable, flag, default, help text and validation — and derives everything
// else from that one declaration: reading the environment, the flags (a flag
// overrides its variable), `--help`, warnings about DKTSCORE_* variables
// nobody reads, and one error that lists every problem at once.
//
// A command builds a Set, binds its settings to the fields of its own plain
// config struct, and calls Resolve:
//
//	var c Config
//	set := config.NewSet("dktscore serve", config.FromEnvironment)
//	config.Int(set, &c.Sessions, config.Spec{Env: "SESSIONS", Flag: "sessions", Default: "2",
//		Help: "concurrent TensorFlow sessions"}).Check(config.AtLeast(1))
//	res, err := set.Resolve(args, os.Environ())
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Prefix starts every environment variable dktscore reads.
const Prefix = "DKTSCORE_"

// Sources says whether a Set reads the environment besides its flags.
type Sources int

const (
	// FlagsOnly: batch commands (score, bench) are configured on their
	// command line alone, so a variable set for a long-running worker in the
	// same shell cannot change a one-off run.
	FlagsOnly Sources = iota
	// FromEnvironment: servers read DKTSCORE_* variables, and a flag overrides
	// its variable.
	FromEnvironment
)

// Spec is what a user sees of a setting.
type Spec struct {
	Env     string // variable name after Prefix, e.g. "BATCH_SIZE"; "" for a flag-only setting
	Flag    string // flag name without dashes; "" for a variable-only setting
	Default string // written as a user would write it; "" leaves the field's zero value
	Help    string // what it means, in the user's terms
}

// Setting is one declared setting of a Set.
type Setting struct {
	Spec
	envRead bool // the set reads the environment: messages name the variable
	value   value
	checks  []func() error
}

// Name is how messages name the setting: the variable with its flag, e.g.
// "DKTSCORE_BATCH_SIZE (--batch-size)", or whichever of the two exists.
func (s *Setting) Name() string {
	switch {
	case !s.envRead || s.Env == "":
		return "--" + s.Flag
	case s.Flag != "":
		return Prefix + s.Env + " (--" + s.Flag + ")"
	}
	return Prefix + s.Env
}

// EnvName is the full variable name, "" for a flag-only setting.
func (s *Setting) EnvName() string {
	if s.Env == "" {
		return ""
	}
	return Prefix + s.Env
}


// Set is the settings of one command.
type Set struct {
	command  string // "dktscore serve": how messages and help name the command
	sources  Sources
	settings []*Setting
	checks   []func() error // checks of several settings together
}

// NewSet starts the settings of command.
func NewSet(command string, sources Sources) *Set {
	return &Set{command: command, sources: sources}
}

// Settings lists the declared settings in declaration order.
func (s *Set) Settings() []*Setting { return s.settings }

// Check adds a check of several settings together; its message names them.
func (s *Set) Check(check func() error) { s.checks = append(s.checks, check) }

// Lookup returns the setting with variable name env (without Prefix) or flag
// name, or nil.
func (s *Set) Lookup(name string) *Setting {
	for _, st := range s.settings {
		if st.Env == name || st.Flag == name {
			return st
		}
	}
	return nil
}

func (s *Set) add(spec Spec, v value) *Setting {
	if spec.Env == "" && spec.Flag == "" {
		panic("config: a setting needs a variable or a flag")
	}
	if spec.Help == "" {
		panic("config: setting " + spec.Env + spec.Flag + " has no help text")
	}
	for _, other := range s.settings {
		if (spec.Env != "" && other.Env == spec.Env) || (spec.Flag != "" && other.Flag == spec.Flag) {
			panic("config: " + spec.Env + spec.Flag + " declared twice")
		}
	}
	if s.sources == FlagsOnly && spec.Flag == "" {
		panic("config: " + spec.Env + " has no flag, and " + s.command + " reads only flags")
	}
	st := &Setting{Spec: spec, envRead: s.sources == FromEnvironment, value: v}
	s.settings = append(s.settings, st)
	return st
}

// Result is a resolved configuration's news for the caller.
type Result struct {
	// Help is true when --help or -h was given: the caller prints Usage and
	// exits 0, whatever else is wrong.
	Help bool
	// Unknown lists DKTSCORE_* variables that no setting reads, sorted (a
	// typo, usually): warnings when the configuration is valid.
	Unknown []Unknown
}

// Resolve fills the bound fields from their defaults (declaring a setting
// does not touch its field), then the environment
// (FromEnvironment sets), then args. It returns every problem in one error
// (one per line): values that do not parse, flags that do not exist, stray
// arguments and failed checks. A value that did not parse is not judged
// again by its checks; a flag overrides its variable, so a bad variable it
// replaced is no problem.
func (s *Set) Resolve(args []string, environ []string) (Result, error) {
	var res Result
	var problems []error
	for _, st := range s.settings {
		if st.Default == "" {
			continue
		}
		if err := st.value.Set(st.Default); err != nil {
			panic(fmt.Sprintf("config: default %q of %s: %v", st.Default, st.Name(), err))
		}
	}
	unparsed := map[*Setting]bool{}
	fromEnv := map[*Setting]error{}
	if s.sources == FromEnvironment {
		vars := environMap(environ)
		for _, st := range s.settings {
			text, ok := vars[st.EnvName()]
			if st.Env == "" || !ok {
				continue
			}
			if err := st.value.Set(text); err != nil {
				fromEnv[st] = fmt.Errorf("%s: %q is not %s", st.EnvName(), text, st.value.hint())
			}
		}
		res.Unknown = s.unknown(vars)
	}

	unparsedFlags := map[*Setting]bool{}
	fs := s.flagSet(unparsedFlags)
	flagProblems, help := parseAllFlags(fs, args)
	if help {
		return Result{Help: true}, nil
	}
	problems = append(problems, flagProblems...)
	overridden := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { overridden[f.Name] = true })
	for _, st := range s.settings {
		if err, bad := fromEnv[st]; bad && !overridden[st.Flag] {
			problems = append(problems, err)
			unparsed[st] = true
		}
		if unparsedFlags[st] {
			unparsed[st] = true
		}
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q: %s takes only flags", fs.Arg(0), s.command))
	}
	for _, st := range s.settings {
		if unparsed[st] {
			continue
		}
		for _, check := range st.checks {
			if err := check(); err != nil {
				if v := st.value.String(); v != "" {
					problems = append(problems, fmt.Errorf("%s %s %w", st.Name(), v, err))
				} else {
					problems = append(problems, fmt.Errorf("%s %w", st.Name(), err))
				}
			}
		}
	}
	// A field whose value did not parse kept its default, so a check of
	// several settings judges the default there, never a half-set value.
	for _, check := range s.checks {
		if err := check(); err != nil {
			problems = append(problems, err)
		}
	}
	return res, errors.Join(problems...)
}

// flagSet registers every setting that has a flag. A flag whose value does
// not parse is recorded in unparsed, so that its checks are skipped (the
// setting keeps its earlier value, which a check would misjudge as the
// user's).
func (s *Set) flagSet(unparsed map[*Setting]bool) *flag.FlagSet {
	fs := flag.NewFlagSet(s.command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // --help is answered by the caller, on stdout
	for _, st := range s.settings {
		if st.Flag != "" {
			fs.Var(flagValue{st, unparsed}, st.Flag, st.Help)
		}
	}
	return fs
}

// flagValue is a setting as the flag package sees it.
type flagValue struct {
	st       *Setting
	unparsed map[*Setting]bool
}

func (f flagValue) Set(text string) error {
	err := f.st.value.Set(text)
	if err != nil {
		f.unparsed[f.st] = true
	}
	return err
}

func (f flagValue) String() string { return f.st.value.String() }

// IsBoolFlag is the flag package's marker for a flag that stands alone
// (--gpu-allow-growth means true).
func (f flagValue) IsBoolFlag() bool {
	_, ok := f.st.value.(*scalar[bool])
	return ok
}

// parseAllFlags parses args into fs and returns every bad flag, not just the
// first: after an error it goes on with the arguments that follow (the flag
// package has consumed the bad one). help is true when --help or -h appears.
func parseAllFlags(fs *flag.FlagSet, args []string) (problems []error, help bool) {
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

// Environ renders every variable-backed setting's field as NAME=value, in the form
// Resolve reads back: a supervisor hands them to the workers it starts, so
// each runs the configuration its parent resolved from flags and
// environment together.
func (s *Set) Environ() []string {
	var out []string
	for _, st := range s.settings {
		if st.Env != "" && st.envRead {
			out = append(out, st.EnvName()+"="+st.value.String())
		}
	}
	return out
}

// WriteUsage writes intro, then every setting with its variable, flag,
// default and meaning.
func (s *Set) WriteUsage(w io.Writer, intro string) {
	fmt.Fprint(w, intro)
	if s.sources == FromEnvironment {
		fmt.Fprint(w, "\nSettings (a flag overrides its variable; a DKTSCORE_* variable not listed here is warned about at start;\nevery invalid value is reported at once, with exit status 2):\n")
	} else {
		fmt.Fprint(w, "\nFlags:\n")
	}
	for _, st := range s.settings {
		var names []string
		if st.Env != "" && s.sources == FromEnvironment {
			names = append(names, st.EnvName())
		}
		if st.Flag != "" {
			names = append(names, "--"+st.Flag+st.value.placeholder())
		}
		def := ""
		if st.Default != "" {
			def = " (default " + st.Default + ")"
		}
		fmt.Fprintf(w, "  %s%s\n        %s\n", strings.Join(names, ", "), def, st.Help)
	}
}

// environMap turns os.Environ()-style "NAME=value" entries into a map; a
// later entry wins, as exec.Cmd's environment does.
func environMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Names lists the full variable names of the settings that read one.
func (s *Set) Names() []string {
	var out []string
	for _, st := range s.settings {
		if st.Env != "" && st.envRead {
			out = append(out, st.EnvName())
		}
	}
	return slices.Clip(out)
}
