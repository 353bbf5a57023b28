// Package kafkatest is what the packages with Kafka integration tests share:
// the broker list those tests run against, and a note that cannot be missed
// when they were skipped because no broker was named.
package kafkatest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// EnvBrokers names the brokers (comma-separated host:port) the integration
// tests run against; scripts/kafka-local start runs one at 127.0.0.1:9092.
const EnvBrokers = "DKTSCORE_KAFKA_BROKERS"

// The secured listener (SASL_SSL with SCRAM-SHA-512) the TLS integration
// tests run against; KAFKA_SECURITY=tls-scram scripts/kafka-local start runs
// one and writes these four to <run dir>/tls-scram.env.
const (
	EnvTLSBrokers = "DKTSCORE_TEST_KAFKA_TLS_BROKERS" // host:port list of the SASL_SSL listener
	EnvCAFile     = "DKTSCORE_TEST_KAFKA_CA_FILE"     // PEM CA that signed the broker certificate
	EnvUser       = "DKTSCORE_TEST_KAFKA_USER"        // SCRAM-SHA-512 user
	EnvPassword   = "DKTSCORE_TEST_KAFKA_PASSWORD"    // its password
)

// skipped and skippedSecure count, per test binary, the tests Brokers and
// SecureBroker skipped.
var skipped, skippedSecure atomic.Int64

// Secure is a broker listener that wants TLS and SCRAM-SHA-512.
type Secure struct {
	Brokers        []string
	CAFile         string
	User, Password string
}

// SecureBroker returns the secured listener named by EnvTLSBrokers and its
// companions. When EnvTLSBrokers is unset, tb is skipped and the skip counted
// for Main's note; when it is set but a companion is not, tb fails, as a
// half-configured run is a mistake to fix, not a reason to skip.
func SecureBroker(tb testing.TB) Secure {
	tb.Helper()
	v := os.Getenv(EnvTLSBrokers)
	if v == "" {
		skippedSecure.Add(1)
		tb.Skip("set " + EnvTLSBrokers + " and the rest of <run dir>/tls-scram.env (KAFKA_SECURITY=tls-scram scripts/kafka-local start) to run")
	}
	s := Secure{Brokers: strings.Split(v, ","), CAFile: os.Getenv(EnvCAFile), User: os.Getenv(EnvUser), Password: os.Getenv(EnvPassword)}
	for _, e := range []struct{ name, v string }{{EnvCAFile, s.CAFile}, {EnvUser, s.User}, {EnvPassword, s.Password}} {
		if e.v == "" {
			tb.Fatalf("%s is set but %s is not: set all four from <run dir>/tls-scram.env", EnvTLSBrokers, e.name)
		}
	}
	return s
}

// Brokers returns the brokers named by EnvBrokers. When it is unset, tb is
// skipped and the skip counted for Main's note.
func Brokers(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv(EnvBrokers)
	if v == "" {
		skipped.Add(1)
		tb.Skip("set " + EnvBrokers + " (scripts/kafka-local start) to run")
	}
	return strings.Split(v, ",")
}

// Main runs the package's tests and exits with their status; a package's
// TestMain calls it. If Brokers skipped any test, it first prints
//
//	SKIPPED: 3 Kafka integration tests in github.com/dktscore/dktscore/io/kafka (set DKTSCORE_KAFKA_BROKERS, e.g. scripts/kafka-local start)
//
// where a plain `go test ./...` shows it (see noteWriter).
func Main(m *testing.M) {
	pkg := callerPackage()
	code := m.Run()
	note := func(n int64, kind, how string) {
		if n == 0 {
			return
		}
		tests := "tests"
		if n == 1 {
			tests = "test"
		}
		w, done := noteWriter()
		fmt.Fprintf(w, "SKIPPED: %d %s %s in %s (%s)\n", n, kind, tests, pkg, how)
		done()
	}
	note(skipped.Load(), "Kafka integration", "set "+EnvBrokers+", e.g. scripts/kafka-local start")
	note(skippedSecure.Load(), "Kafka TLS/SCRAM integration", "set "+EnvTLSBrokers+" and the rest of tls-scram.env, e.g. KAFKA_SECURITY=tls-scram scripts/kafka-local start")
	os.Exit(code)
}

// callerPackage names the package whose TestMain called Main: its import
// path, or for a main package (whose functions are named "main.F") its
// directory.
func callerPackage() string {
	pc, file, _, ok := runtime.Caller(2)
	if !ok {
		return "this package"
	}
	name := runtime.FuncForPC(pc).Name() // "github.com/dktscore/dktscore/io/kafka.TestMain"
	slash := strings.LastIndex(name, "/")
	if dot := strings.Index(name[slash+1:], "."); dot >= 0 {
		name = name[:slash+1+dot]
	}
	if name == "main" {
		return filepath.Dir(file)
	}
	return name
}

// noteWriter returns where the note is seen, and a function to call after
// writing. go test collects a test binary's stdout and stderr and, when it
// tests a list of packages (go test ./...) without -v, throws that output
// away for every package that passes: a note on os.Stderr would be hidden in
// exactly the run that needs it. The go command's own stderr is not
// collected, and on Linux the test binary, its child, can open it through
// /proc. That is done only for a terminal or a pipe: a regular file opened
// anew gets an offset of its own, and go's next write there would land on
// the note. In every other case (-v, a binary not run by go, no /proc, go's
// stderr redirected to a file) the note goes to os.Stderr, where -v and
// failing runs show it.
func noteWriter() (io.Writer, func()) {
	stderr := func() (io.Writer, func()) { return os.Stderr, func() {} }
	if testing.Verbose() {
		return stderr()
	}
	parent := fmt.Sprintf("/proc/%d", os.Getppid())
	exe, err := os.Readlink(parent + "/exe")
	if err != nil || filepath.Base(exe) != "go" {
		return stderr()
	}
	info, err := os.Stat(parent + "/fd/2")
	if err != nil || info.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe) == 0 {
		return stderr()
	}
	f, err := os.OpenFile(parent+"/fd/2", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return stderr()
	}
	return f, func() { f.Close() }
}
