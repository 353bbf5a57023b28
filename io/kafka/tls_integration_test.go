package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dktscore/dktscore/internal/kafkatest"
)

// Integration tests against a SASL_SSL listener with SCRAM-SHA-512
// (KAFKA_SECURITY=tls-scram scripts/kafka-local start runs one beside the
// plaintext one and writes its settings to <run dir>/tls-scram.env).

func secureConfig(t *testing.T) ClientConfig {
	t.Helper()
	s := kafkatest.SecureBroker(t)
	return ClientConfig{
		Brokers:  s.Brokers,
		ClientID: "dktscore-test",
		TLS:      TLS{Enabled: true, CAFile: s.CAFile},
		SASL:     SASL{Mechanism: SASLScramSHA512, User: s.User, Password: s.Password},
	}
}

func TestTLSSCRAMRoundTrip(t *testing.T) {
	cfg := secureConfig(t)
	ctx := testCtx(t, 60*time.Second)
	topic := uniqueName(t, "in")
	if err := EnsureTopics(ctx, cfg, 1, topic); err != nil {
		t.Fatal(err)
	}
	produceValues(ctx, t, cfg, topic, "a", "b", "c")

	c := newTestConsumer(t, ConsumerConfig{Client: cfg, Group: uniqueName(t, "group"), Topics: []string{topic}})
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping over TLS+SCRAM: %v", err)
	}
	var got []string
	for _, r := range readN(ctx, t, c, 3) {
		got = append(got, string(r.m.Value))
		r.ack(nil)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("read %q over TLS+SCRAM, want %q", got, want)
	}
	if err := c.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// failFastWithin bounds each misconfigured connection: the client must give
// up with the cause long before this, not retry until the caller's deadline.
const failFastWithin = 15 * time.Second

// TestTLSSCRAMMisconfigurationFailsFast: each way of getting the secured
// listener wrong ends the first request with one error that names the cause
// and the setting to fix, before the context's deadline, and never shows the
// password.
func TestTLSSCRAMMisconfigurationFailsFast(t *testing.T) {
	good := secureConfig(t)

	wrongPassword := good
	wrongPassword.SASL.Password = good.SASL.Password + "-wrong"

	untrusted := good
	untrusted.TLS.CAFile = writeOtherCA(t)

	plaintext := good
	plaintext.TLS = TLS{}
	plaintext.SASL = SASL{}

	noSASL := good
	noSASL.SASL = SASL{}

	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		want []string // substrings of the error, in the user's terms
		is   error
	}{
		{"wrong password", wrongPassword, []string{"SASL authentication failed", "DKTSCORE_KAFKA_SASL_PASSWORD"}, ErrAuthentication},
		{"untrusted CA", untrusted, []string{"certificate", "DKTSCORE_KAFKA_TLS_CA_FILE"}, ErrTLS},
		{"plaintext client on the TLS port", plaintext, []string{"TLS", "DKTSCORE_KAFKA_TLS_ENABLED"}, ErrTLS},
		{"TLS without SASL on a SASL port", noSASL, []string{"SASL", "DKTSCORE_KAFKA_SASL_MECHANISM"}, ErrAuthentication},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, first := range []struct {
				what string
				do   func(context.Context) error
			}{
				{"producer Ping", func(ctx context.Context) error {
					p, err := NewProducer(tc.cfg)
					if err != nil {
						return err
					}
					defer p.Close(context.Background())
					return p.Ping(ctx)
				}},
				{"Produce", func(ctx context.Context) error {
					p, err := NewProducer(tc.cfg)
					if err != nil {
						return err
					}
					defer p.Close(context.Background())
					return p.Produce(ctx, Message{Topic: uniqueName(t, "out"), Value: []byte("x")})
				}},
				{"EnsureTopics", func(ctx context.Context) error {
					return EnsureTopics(ctx, tc.cfg, 1, uniqueName(t, "t"))
				}},
				{"consumer Read", func(ctx context.Context) error {
					c, err := NewConsumer(ConsumerConfig{Client: tc.cfg, Group: uniqueName(t, "group"), Topics: []string{uniqueName(t, "in")}})
					if err != nil {
						return err
					}
					defer c.Close(context.Background())
					_, _, err = c.Read(ctx)
					return err
				}},
			} {
				t.Run(first.what, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), failFastWithin)
					defer cancel()
					start := time.Now()
					err := first.do(ctx)
					took := time.Since(start)
					if err == nil {
						t.Fatal("succeeded against a misconfigured client")
					}
					msg := err.Error()
					t.Logf("after %v: %v", took.Round(time.Millisecond), msg)
					if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
						t.Errorf("took the whole %v deadline instead of failing fast: %v", failFastWithin, err)
					}
					if !errors.Is(err, tc.is) {
						t.Errorf("error does not wrap %v: %v", tc.is, err)
					}
					for _, w := range tc.want {
						if !strings.Contains(msg, w) {
							t.Errorf("error does not say %q: %v", w, msg)
						}
					}
					if strings.Contains(msg, good.SASL.Password) {
						t.Errorf("error shows the password: %v", msg)
					}
				})
			}
		})
	}
}

// writeOtherCA writes a CA certificate that did not sign the broker's.
func writeOtherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "some other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
