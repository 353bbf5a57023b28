package modelserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"

	servingconfigpb "github.com/wamuir/graft/tensorflow/serving/config_go_proto"
)

// readSSLConfig builds the TLS configuration of the gRPC and REST ports
// from TF Serving's SSLConfig text proto. As in TF Serving, its fields hold
// PEM text, not file paths:
//
//	server_key, server_cert → the certificate both ports present
//	custom_ca               → the CAs client certificates are verified against (only with client_verify)
//	client_verify           → mutual TLS: a client without a certificate signed by custom_ca is refused
//
// Every PEM is parsed here, so a bad file is a configuration error before
// the model loads, not a handshake failure on the first request.
func readSSLConfig(path string) (*tls.Config, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ssl_config_file: %w", err)
	}
	var p servingconfigpb.SSLConfig
	if err := (prototext.UnmarshalOptions{}).Unmarshal(text, &p); err != nil {
		return nil, fmt.Errorf("--ssl_config_file %s is not an SSLConfig text proto (fields server_key, server_cert, custom_ca, client_verify): %w", path, err)
	}
	// TF Serving takes the PEM text itself; a path there is the usual slip.
	notPEM := func(field, value string) error {
		if !strings.Contains(value, "-----BEGIN") {
			return fmt.Errorf("--ssl_config_file %s: %s holds no PEM block; it takes the PEM text itself (as TF Serving), not a file path", path, field)
		}
		return nil
	}
	var errs []error
	for _, f := range []struct{ name, value string }{{"server_key", p.ServerKey}, {"server_cert", p.ServerCert}} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("--ssl_config_file %s: %s is empty; TLS needs the server's certificate and its key", path, f.name))
		} else {
			errs = append(errs, notPEM(f.name, f.value))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(p.ServerCert), []byte(p.ServerKey))
	if err != nil {
		return nil, fmt.Errorf("--ssl_config_file %s: server_cert and server_key are not a certificate and its key: %w", path, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	var cas *x509.CertPool
	if p.CustomCa != "" {
		if err := notPEM("custom_ca", p.CustomCa); err != nil {
			return nil, err
		}
		cas = x509.NewCertPool()
		if !cas.AppendCertsFromPEM([]byte(p.CustomCa)) {
			return nil, fmt.Errorf("--ssl_config_file %s: custom_ca holds no certificate that parses", path)
		}
	}
	if p.ClientVerify {
		// TF Serving would fall back to the system's CAs here; trusting
		// every public CA to vouch for clients is almost surely a mistake.
		if cas == nil {
			return nil, fmt.Errorf("--ssl_config_file %s: client_verify is true but custom_ca is empty; set custom_ca to the PEM of the CA that signs client certificates", path)
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = cas
	}
	return c, nil
}
