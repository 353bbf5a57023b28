package kafka

import (
	"testing"

	"github.com/dktscore/dktscore/internal/kafkatest"
)

// A plain `go test ./...` hides skipped tests; kafkatest.Main says how many
// Kafka integration tests were skipped for want of a broker.
func TestMain(m *testing.M) { kafkatest.Main(m) }
