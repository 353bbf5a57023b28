package columnar

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// DefaultRowsPerBatch is the batch size used when Config.RowsPerBatch is 0.
const DefaultRowsPerBatch = 4096

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("columnar: invalid config")

// Config configures the writers and EncodeIPCStream.
type Config struct {
	// NumSkills is S, the length of every mastery vector (read from the model).
	NumSkills int
	// ModelVersion is written to every row and to the schema metadata.
	ModelVersion string
	// Format selects the file format; EncodeIPCStream ignores it.
	Format Format
	// RowsPerBatch is how many rows are buffered before a record batch (a
	// Parquet row group) is written; 0 means DefaultRowsPerBatch. It bounds the
	// writer's memory: about RowsPerBatch × NumSkills × 4 bytes for mastery.
	RowsPerBatch int
	// WithSource adds source_topic, source_partition and source_offset to the
	// mastery schema so Kafka consumers can deduplicate. The trajectory schema
	// never has them.
	WithSource bool
	// Now is the clock for scored_at; nil means time.Now. Tests inject a fixed clock.
	Now func() time.Time

	// mem allocates Arrow buffers; nil means memory.DefaultAllocator. Tests
	// set a checked allocator to prove every buffer is released.
	mem memory.Allocator
}

// Validate reports every problem of c in one error wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	return c.validate(true)
}

// validate checks c; formatNeeded is false for EncodeIPCStream, whose output
// is always an Arrow IPC stream.
func (c Config) validate(formatNeeded bool) error {
	var problems []string
	if c.NumSkills <= 0 || c.NumSkills > math.MaxInt32 {
		problems = append(problems, fmt.Sprintf("NumSkills is %d: set it to the model's skill count (1..%d)", c.NumSkills, math.MaxInt32))
	}
	if strings.TrimSpace(c.ModelVersion) == "" {
		problems = append(problems, "ModelVersion is empty: set it to the model's version so results can be traced to it")
	}
	if formatNeeded {
		if c.Format != FormatParquet && c.Format != FormatArrow {
			problems = append(problems, fmt.Sprintf("Format is %q: use %q or %q (ParseFormat accepts user input)", c.Format, FormatParquet, FormatArrow))
		}
	}
	if c.RowsPerBatch < 0 {
		problems = append(problems, fmt.Sprintf("RowsPerBatch is %d: use 0 for the default (%d) or a positive row count", c.RowsPerBatch, DefaultRowsPerBatch))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(problems, "; "))
}

func (c Config) rowsPerBatch() int {
	if c.RowsPerBatch == 0 {
		return DefaultRowsPerBatch
	}
	return c.RowsPerBatch
}

func (c Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c Config) allocator() memory.Allocator {
	if c.mem == nil {
		return memory.DefaultAllocator
	}
	return c.mem
}
