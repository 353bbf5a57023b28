package kafka

import (
	"errors"
	"strings"
	"testing"
)

func TestClientConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ClientConfig
		want []string // substrings, each must appear; none means valid
	}{
		{name: "minimal", cfg: ClientConfig{Brokers: []string{"127.0.0.1:9092"}}},
		{
			name: "sasl scram with tls",
			cfg: ClientConfig{Brokers: []string{"b1:9093", "b2:9093"}, TLS: TLS{Enabled: true},
				SASL: SASL{Mechanism: "scram-sha-512", User: "u", Password: "p"}},
		},
		{name: "no brokers", cfg: ClientConfig{}, want: []string{"DKTSCORE_KAFKA_BROKERS", "is empty"}},
		{name: "bad broker", cfg: ClientConfig{Brokers: []string{"localhost"}}, want: []string{`"localhost" is not host:port`}},
		{name: "bad port", cfg: ClientConfig{Brokers: []string{"h:99999"}}, want: []string{"port number"}},
		{
			name: "every problem at once",
			cfg: ClientConfig{
				SASL: SASL{Mechanism: "GSSAPI"},
				TLS:  TLS{CertFile: "/nonexistent/cert.pem"},
			},
			want: []string{"DKTSCORE_KAFKA_BROKERS", `"GSSAPI"`, "TLS.Enabled", "must be set together", "cannot be read"},
		},
		{name: "sasl without credentials", cfg: ClientConfig{Brokers: []string{"h:1"}, SASL: SASL{Mechanism: "PLAIN"}},
			want: []string{"SASL.User", "SASL.Password"}},
		{name: "credentials without mechanism", cfg: ClientConfig{Brokers: []string{"h:1"}, SASL: SASL{User: "u"}},
			want: []string{"DKTSCORE_KAFKA_SASL_MECHANISM"}},
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
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want an ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, missing %q", err, w)
				}
			}
		})
	}
}

func TestConsumerAndTransactConfigValidate(t *testing.T) {
	err := TransactConfig{Consumer: ConsumerConfig{MaxPollRecords: -1, Topics: []string{""}}}.Validate()
	for _, w := range []string{"DKTSCORE_KAFKA_BROKERS", "Group", "Topics[0]", "MaxPollRecords", "TransactionalID"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, missing %q", err, w)
		}
	}
	ok := ConsumerConfig{Client: ClientConfig{Brokers: []string{"h:1"}}, Group: "g", Topics: []string{"in"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid consumer config: %v", err)
	}
}

func TestToRecord(t *testing.T) {
	m := Message{Topic: "out", Key: []byte("k"), Value: []byte("v"), Partition: 7, Offset: 9,
		Headers: map[string][]byte{"b": []byte("2"), "a": []byte("1")}}
	r, err := toRecord(m, DefaultMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	if r.Partition != 0 || r.Offset != 0 {
		t.Errorf("partition/offset leaked into the record: %d/%d", r.Partition, r.Offset)
	}
	if len(r.Headers) != 2 || r.Headers[0].Key != "a" || r.Headers[1].Key != "b" {
		t.Errorf("headers = %+v, want sorted a, b", r.Headers)
	}
	back := fromRecord(r)
	if string(back.Headers["a"]) != "1" || string(back.Value) != "v" {
		t.Errorf("round trip = %+v", back)
	}

	_, err = toRecord(Message{Topic: "big", Value: make([]byte, DefaultMaxMessageBytes)}, DefaultMaxMessageBytes)
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), `"big"`) || !strings.Contains(err.Error(), "1048576") {
		t.Errorf("oversized message error = %v, want ErrMessageTooLarge naming topic and limit", err)
	}
	if _, err := toRecord(Message{Value: []byte("x")}, DefaultMaxMessageBytes); err == nil {
		t.Error("empty topic accepted")
	}
}
