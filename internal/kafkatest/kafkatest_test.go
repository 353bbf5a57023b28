package kafkatest

import (
	"slices"
	"testing"
)

func TestBrokersSkipsAndCountsWithoutABroker(t *testing.T) {
	t.Setenv(EnvBrokers, "")
	before := skipped.Load()
	t.Run("integration", func(t *testing.T) {
		Brokers(t)
		t.Fatal("Brokers returned without a broker")
	})
	if got := skipped.Load() - before; got != 1 {
		t.Errorf("counted %d skips, want 1", got)
	}
}

func TestBrokersSplitsTheList(t *testing.T) {
	t.Setenv(EnvBrokers, "10.0.0.1:9092,10.0.0.2:9092")
	if got, want := Brokers(t), []string{"10.0.0.1:9092", "10.0.0.2:9092"}; !slices.Equal(got, want) {
		t.Errorf("Brokers = %q, want %q", got, want)
	}
}

func TestCallerPackageNamesTheTestMainsPackage(t *testing.T) {
	// callerPackage looks two frames up, as from Main called by TestMain.
	func() {
		if got, want := callerPackage(), "github.com/dktscore/dktscore/internal/kafkatest"; got != want {
			t.Errorf("callerPackage = %q, want %q", got, want)
		}
	}()
}

func TestSecureBrokerSkipsAndCountsWithoutAListener(t *testing.T) {
	t.Setenv(EnvTLSBrokers, "")
	before := skippedSecure.Load()
	t.Run("integration", func(t *testing.T) {
		SecureBroker(t)
		t.Fatal("SecureBroker returned without a listener")
	})
	if got := skippedSecure.Load() - before; got != 1 {
		t.Errorf("counted %d skips, want 1", got)
	}
}

func TestSecureBrokerReadsAllFour(t *testing.T) {
	t.Setenv(EnvTLSBrokers, "127.0.0.1:9094")
	t.Setenv(EnvCAFile, "/tmp/ca.pem")
	t.Setenv(EnvUser, "u")
	t.Setenv(EnvPassword, "p")
	got := SecureBroker(t)
	if !slices.Equal(got.Brokers, []string{"127.0.0.1:9094"}) || got.CAFile != "/tmp/ca.pem" || got.User != "u" || got.Password != "p" {
		t.Errorf("SecureBroker = %+v", got)
	}
}
