package modelserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func resolve(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var c Config
	_, err := Settings(&c).Resolve(append([]string{"--model_base_path=/m"}, args...), nil)
	return c, err
}

func paramsFile(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "batching.txt")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTensorflowModelServersFlagsAndDefaults(t *testing.T) {
	c, err := resolve(t, "--port=8500", "--rest_api_port=8501", "--model_name=builder")
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCPort != 8500 || c.RESTPort != 8501 || c.ModelName != "builder" || c.ModelBasePath != "/m" || !c.EnableBatching || c.PollSeconds != 1 {
		t.Fatalf("config %+v", c)
	}
	if c, _ := resolve(t); c.RESTPort != 0 || c.GRPCPort != 8500 || c.ModelName != "default" {
		t.Fatalf("defaults %+v, want TF Serving's: REST off, gRPC 8500, model default", c)
	}
}

func TestBatchingParametersMapOntoTheBatcher(t *testing.T) {
	path := paramsFile(t, "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1500 }\nmax_enqueued_batches { value: 8 }\nnum_batch_threads { value: 3 }\n")
	c, err := resolve(t, "--batching_parameters_file="+path, "--batch-size=4")
	if err != nil {
		t.Fatal(err)
	}
	if c.BatchSize != 32 || c.MaxDelay != 1500*time.Microsecond || c.MaxQueuedSequences != 32*8 || c.Sessions != 3 {
		t.Fatalf("batch %d delay %v queue %d sessions %d; want 32, 1.5ms, 256, 3 (the file wins)", c.BatchSize, c.MaxDelay, c.MaxQueuedSequences, c.Sessions)
	}
	c, err = resolve(t, "--batching_parameters_file="+paramsFile(t, "batch_timeout_micros { value: 0 }"))
	if err != nil || c.MaxDelay != time.Microsecond {
		t.Fatalf("timeout 0: delay %v, err %v; want TF Serving's 0 accepted as 1µs", c.MaxDelay, err)
	}
	if c, _ := resolve(t, "--enable_batching=false", "--batching_parameters_file="+path); c.BatchSize != 1 {
		t.Fatalf("--enable_batching=false: batch size %d, want 1", c.BatchSize)
	}
}

func TestBatchingParametersRefuseWhatTheyCannotHonour(t *testing.T) {
	for text, want := range map[string]string{
		"allowed_batch_sizes: 8\nallowed_batch_sizes: 16": "allowed_batch_sizes",
		"pad_variable_length_inputs: true":                "pad_variable_length_inputs",
		"thread_pool_name { value: \"x\" }":               "thread_pool_name",
		"max_batch_sise { value: 3 }":                     "max_batch_sise",
		"max_batch_size { value: 0 }":                     "max_batch_size is 0",
		"num_batch_threads { value: -2 }":                 "num_batch_threads is -2",
	} {
		if _, err := resolve(t, "--batching_parameters_file="+paramsFile(t, text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want one naming %q", text, err, want)
		}
	}
	if _, err := resolve(t, "--batching_parameters_file=/nonexistent"); err == nil || !strings.Contains(err.Error(), "--batching_parameters_file") {
		t.Errorf("missing file: err %v", err)
	}
}

func TestModelServerConfigProblems(t *testing.T) {
	var c Config
	_, err := Settings(&c).Resolve([]string{"--port=8500", "--rest_api_port=8500", "--model_config_file=x"}, nil)
	for _, want := range []string{"flag provided but not defined: -model_config_file", "DKTSCORE_MODEL_BASE_PATH (--model_base_path) is empty", "--rest_api_port 8500 is also --port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want %q", err, want)
		}
	}
}

// selfSigned is a PEM certificate for 127.0.0.1 and its PEM key.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func sslConfigFile(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "ssl.txt")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSSLConfigServesTLS(t *testing.T) {
	cert, key := selfSigned(t)
	for _, tc := range []struct {
		name         string
		text         string
		clientVerify bool
	}{
		{"server only", fmt.Sprintf("server_key: %q\nserver_cert: %q\n", key, cert), false},
		{"custom_ca without client_verify is unused", fmt.Sprintf("server_key: %q\nserver_cert: %q\ncustom_ca: %q\n", key, cert, cert), false},
		{"mutual TLS", fmt.Sprintf("server_key: %q\nserver_cert: %q\ncustom_ca: %q\nclient_verify: true\n", key, cert, cert), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := resolve(t, "--ssl_config_file="+sslConfigFile(t, tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if c.TLS == nil || len(c.TLS.Certificates) != 1 || c.TLS.MinVersion != tls.VersionTLS12 {
				t.Fatalf("TLS %+v, want the server certificate and TLS 1.2 at least", c.TLS)
			}
			verifies := c.TLS.ClientAuth == tls.RequireAndVerifyClientCert && c.TLS.ClientCAs != nil
			if verifies != tc.clientVerify || (!tc.clientVerify && c.TLS.ClientAuth != tls.NoClientCert) {
				t.Fatalf("client auth %v (CAs %v), want verification %v", c.TLS.ClientAuth, c.TLS.ClientCAs != nil, tc.clientVerify)
			}
		})
	}
	t.Setenv("DKTSCORE_SSL_CONFIG_FILE", sslConfigFile(t, fmt.Sprintf("server_key: %q\nserver_cert: %q\n", key, cert)))
	var c Config
	if _, err := Settings(&c).Resolve([]string{"--model_base_path=/m"}, os.Environ()); err != nil || c.TLS == nil {
		t.Fatalf("DKTSCORE_SSL_CONFIG_FILE: TLS %v, err %v", c.TLS, err)
	}
	if c, err := resolve(t); err != nil || c.TLS != nil {
		t.Fatalf("no --ssl_config_file: TLS %v, err %v; want plaintext", c.TLS, err)
	}
}

func TestSSLConfigProblemsNameTheFileAndField(t *testing.T) {
	cert, key := selfSigned(t)
	other, _ := selfSigned(t)
	for name, tc := range map[string]struct{ text, want string }{
		"unknown field":        {fmt.Sprintf("server_key: %q\nserver_cert: %q\nclient_verfy: true\n", key, cert), "client_verfy"},
		"not a text proto":     {"server_key: {", "is not an SSLConfig text proto"},
		"bad PEM":              {fmt.Sprintf("server_key: %q\nserver_cert: %q\n", key, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "server_cert and server_key are not a certificate and its key"},
		"key of another cert":  {fmt.Sprintf("server_key: %q\nserver_cert: %q\n", key, other), "server_cert and server_key are not"},
		"a path, not PEM":      {fmt.Sprintf("server_key: %q\nserver_cert: %q\n", "/etc/tls/key.pem", cert), "server_key holds no PEM block"},
		"no certificate":       {fmt.Sprintf("server_key: %q\n", key), "server_cert is empty"},
		"custom_ca unparsable": {fmt.Sprintf("server_key: %q\nserver_cert: %q\ncustom_ca: %q\n", key, cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "custom_ca holds no certificate that parses"},
		"verify with no CA":    {fmt.Sprintf("server_key: %q\nserver_cert: %q\nclient_verify: true\n", key, cert), "client_verify is true but custom_ca is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			path := sslConfigFile(t, tc.text)
			_, err := resolve(t, "--ssl_config_file="+path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--ssl_config_file "+path) {
				t.Fatalf("err %v, want one naming --ssl_config_file %s and %q", err, path, tc.want)
			}
		})
	}
	// Reported with every other problem, not instead of them.
	_, err := resolve(t, "--ssl_config_file=/nonexistent", "--rest_api_port=8500")
	for _, want := range []string{"--ssl_config_file", "/nonexistent", "--rest_api_port 8500 is also --port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want %q", err, want)
		}
	}
}
