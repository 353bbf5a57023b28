package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Sentinels for a client the brokers will never accept as configured:
// retrying cannot help, so the first request that meets one fails with it
// instead of being retried until the caller's deadline.
var (
	// ErrAuthentication: SASL failed (wrong user, password or mechanism) or
	// the listener wants SASL and none is configured.
	ErrAuthentication = errors.New("kafka: authentication failed")
	// ErrTLS: the broker's certificate cannot be verified, or the client and
	// the listener disagree on whether the connection is TLS at all.
	ErrTLS = errors.New("kafka: TLS failed")
)

// securityError maps an error from kgo to one wrapping ErrAuthentication or
// ErrTLS, in the terms of the settings to fix, or returns nil when err is not
// such a misconfiguration (a broker that is down or slow is worth retrying).
// kgo's own text is kept after the cause: it never holds the password.
//
// The cases, as kgo reports them:
//   - kerr.SaslAuthenticationFailed: the broker rejected the credentials;
//   - *kgo.ErrFirstReadEOF saying SASL: the broker closed the connection at
//     the first request, which a SASL listener does to a client without SASL;
//   - x509 and tls.CertificateVerificationError: the broker's certificate is
//     not signed by a CA we trust, or does not name the address we dialled;
//   - a response that starts with a TLS alert: a plaintext client on a TLS
//     listener (kgo has no type for it, only this text);
//   - tls.RecordHeaderError, or *kgo.ErrFirstReadEOF saying TLS: a TLS
//     client on a plaintext listener.
func securityError(brokers []string, err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		recordHdr  tls.RecordHeaderError
		firstRead  *kgo.ErrFirstReadEOF
		firstReadS string
	)
	if errors.As(err, &firstRead) {
		firstReadS = firstRead.Error()
	}
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("%w: SASL authentication failed at brokers %v: %v; check DKTSCORE_KAFKA_SASL_USER and DKTSCORE_KAFKA_SASL_PASSWORD, and that DKTSCORE_KAFKA_SASL_MECHANISM is one the listener enables", ErrAuthentication, brokers, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("%w: the brokers %v refused the SASL mechanism: %v; set DKTSCORE_KAFKA_SASL_MECHANISM to one the listener enables", ErrAuthentication, brokers, err)
	case strings.Contains(firstReadS, "SASL"):
		return fmt.Errorf("%w: the brokers %v closed the connection at the first request, as a listener that wants SASL does to a client without it: set DKTSCORE_KAFKA_SASL_MECHANISM, DKTSCORE_KAFKA_SASL_USER and DKTSCORE_KAFKA_SASL_PASSWORD (or use a listener without SASL)", ErrAuthentication, brokers)
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("%w: the certificate of the brokers %v could not be verified: %v; set DKTSCORE_KAFKA_TLS_CA_FILE to the PEM CA that signed it, and name the brokers in DKTSCORE_KAFKA_BROKERS as the certificate does", ErrTLS, brokers, err)
	case strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint"):
		return fmt.Errorf("%w: the brokers %v answered with a TLS alert to this plaintext client: set DKTSCORE_KAFKA_TLS_ENABLED=true (and DKTSCORE_KAFKA_TLS_CA_FILE), or point DKTSCORE_KAFKA_BROKERS at a plaintext listener", ErrTLS, brokers)
	case errors.As(err, &recordHdr), strings.Contains(firstReadS, "TLS"):
		return fmt.Errorf("%w: the brokers %v do not speak TLS on that port: unset DKTSCORE_KAFKA_TLS_ENABLED, or point DKTSCORE_KAFKA_BROKERS at the TLS listener", ErrTLS, brokers)
	}
	return nil
}

// firstContact makes a client's first request fail fast on a
// misconfiguration. kgo retries a produce or a fetch whose connection fails,
// whatever the cause, until the caller's context ends, and then reports only
// the context's error: a wrong password would look like a hung worker. So,
// until one Ping has succeeded, check pings first and returns securityError's
// error if there is one. Any other Ping failure (a broker down or starting)
// returns nil, leaving the caller's request to retry as before; the next call
// checks again.
type firstContact struct {
	brokers []string
	ok      atomic.Bool
}

func (f *firstContact) check(ctx context.Context, cl *kgo.Client) error {
	if f.ok.Load() {
		return nil
	}
	// A few tries: a consumer's group management dials the same seed at the
	// same moment, and a Ping that shares that connection attempt can get a
	// plain EOF or a closed connection instead of kgo's diagnosis.
	for try := 0; ; try++ {
		err := cl.Ping(ctx)
		if err == nil {
			f.ok.Store(true)
			return nil
		}
		if serr := securityError(f.brokers, err); serr != nil {
			return serr
		}
		if try == firstContactTries-1 || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(try+1) * 100 * time.Millisecond):
		}
	}
}

// firstContactTries bounds the Pings of one check: about 0.6 s in all when no
// broker answers, before the caller's request goes on to retry as usual.
const firstContactTries = 4

// pingError is what Ping returns for err: the misconfiguration if it is one,
// else that no broker answered.
func pingError(brokers []string, what string, err error) error {
	if serr := securityError(brokers, err); serr != nil {
		return serr
	}
	return fmt.Errorf("kafka: no broker answered%s: %w; check DKTSCORE_KAFKA_BROKERS and that the cluster is up", what, err)
}

// CheckAccess connects once to cfg's brokers and returns the error wrapping
// ErrAuthentication or ErrTLS when they refuse cfg's TLS or SASL settings, so
// a command can exit with it at startup. It returns nil when the brokers
// accept them, and also when none answered (a cluster still starting is not
// a misconfiguration; the clients retry).
func CheckAccess(ctx context.Context, cfg ClientConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	opts, err := cfg.opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: creating a client for brokers %v: %w", cfg.Brokers, err)
	}
	defer cl.Close()
	f := firstContact{brokers: cfg.Brokers}
	return f.check(ctx, cl)
}
