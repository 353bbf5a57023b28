package columnar

import (
	"bytes"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// EncodeIPCStream encodes rows as one Arrow IPC stream: the mastery schema
// (with its metadata), one record batch holding every row, and the
// end-of-stream marker. This is the value of a Kafka mastery message; a whole
// message is self-describing, so consumers need no schema registry. scoredAt
// is written to every row's scored_at; cfg.Format, RowsPerBatch and Now are
// ignored. An empty rows yields a stream with one zero-row batch.
func EncodeIPCStream(cfg Config, rows []MasteryRow, scoredAt time.Time) ([]byte, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	b := newMasteryBuilder(cfg)
	defer b.rb.Release()
	for i := range rows {
		if err := b.check(&rows[i]); err != nil {
			return nil, err
		}
	}
	for i := range rows {
		b.append(&rows[i])
	}
	b.appendScoredAt(len(rows), scoredAt)
	rec := b.rb.NewRecordBatch()
	defer rec.Release()

	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(cfg.allocator()))
	if err := w.Write(rec); err != nil {
		w.Close()
		return nil, fmt.Errorf("columnar: encode arrow ipc stream: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("columnar: finish arrow ipc stream: %w", err)
	}
	return buf.Bytes(), nil
}
