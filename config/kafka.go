package config

import "github.com/dktscore/dktscore/io/kafka"

// DeclareKafkaClient declares how every Kafka client of a command reaches
// the cluster: brokers, TLS and SASL, bound to c. c.ClientID is the
// caller's to set.
func DeclareKafkaClient(set *Set, c *kafka.ClientConfig) {
	List(set, &c.Brokers, Spec{Env: "KAFKA_BROKERS", Flag: "brokers", Default: "127.0.0.1:9092",
		Help: "Kafka bootstrap brokers, host:port, comma-separated"})
	Bool(set, &c.TLS.Enabled, Spec{Env: "KAFKA_TLS_ENABLED",
		Help: "connect to the brokers over TLS"})
	String(set, &c.TLS.CAFile, Spec{Env: "KAFKA_TLS_CA_FILE",
		Help: "PEM CA bundle that signed the brokers' certificates; unset = system roots"})
	String(set, &c.TLS.CertFile, Spec{Env: "KAFKA_TLS_CERT_FILE",
		Help: "PEM client certificate for mTLS (with DKTSCORE_KAFKA_TLS_KEY_FILE)"})
	String(set, &c.TLS.KeyFile, Spec{Env: "KAFKA_TLS_KEY_FILE",
		Help: "PEM client key for mTLS (with DKTSCORE_KAFKA_TLS_CERT_FILE)"})
	Bool(set, &c.TLS.InsecureSkipVerify, Spec{Env: "KAFKA_TLS_INSECURE_SKIP_VERIFY",
		Help: "skip verifying the brokers' certificates (test brokers only)"})
	String(set, &c.SASL.Mechanism, Spec{Env: "KAFKA_SASL_MECHANISM",
		Help: "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; unset = no SASL"})
	String(set, &c.SASL.User, Spec{Env: "KAFKA_SASL_USER", Help: "SASL user name"})
	String(set, &c.SASL.Password, Spec{Env: "KAFKA_SASL_PASSWORD", Help: "SASL password"})
}
