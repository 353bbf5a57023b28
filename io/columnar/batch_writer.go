package columnar

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
)

// ErrClosed is returned by Write after Close or Abort.
var ErrClosed = errors.New("columnar: writer is closed")

// ErrBadRow is wrapped by every error about a row's content; the message
// names the student.
var ErrBadRow = errors.New("columnar: bad row")

// batchWriter is the streaming core under every writer (rowWriter): rows
// accumulate in rb and leave as one record batch every
// RowsPerBatch rows, so memory is bounded by one batch whatever the output size.
type batchWriter struct {
	cfg      Config
	rb       *array.RecordBuilder
	sink     batchSink
	file     *pendingFile // nil when the caller owns the io.Writer
	buffered int
	// beforeFlush fills the columns that are only known when the batch is
	// written (scored_at); nil when there are none.
	beforeFlush func(n int, at time.Time)
	err         error // first write error; the output is unusable after it
	closed      bool
}

func (w *batchWriter) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// rowAdded counts one appended row and writes the batch when it is full.
func (w *batchWriter) rowAdded() error {
	w.buffered++
	if w.buffered >= w.cfg.rowsPerBatch() {
		return w.flush()
	}
	return nil
}

func (w *batchWriter) flush() error {
	if w.buffered == 0 {
		return nil
	}
	if w.beforeFlush != nil {
		w.beforeFlush(w.buffered, w.cfg.now())
	}
	rec := w.rb.NewRecordBatch()
	defer rec.Release()
	w.buffered = 0
	if err := w.sink.write(rec); err != nil {
		w.err = err
		return err
	}
	return nil
}

// close writes the buffered rows and the footer. Whatever happens, every Arrow
// buffer is released, and a pending file is either committed whole or removed.
func (w *batchWriter) close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	defer w.rb.Release()
	if w.err == nil {
		w.err = w.flush()
	}
	if w.err != nil {
		// The output is already broken; closing the encoder only frees its
		// buffers, so its footer goes nowhere.
		w.sink.abort()
		if w.file != nil {
			w.file.discard()
		}
		return w.err
	}
	if err := w.sink.close(); err != nil {
		w.err = err
		if w.file != nil {
			w.file.discard()
		}
		return err
	}
	if w.file != nil {
		if err := w.file.commit(); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// abort drops buffered rows without writing them or a footer, and removes a
// pending file.
func (w *batchWriter) abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.rb.Release()
	w.sink.abort()
	if w.err == nil {
		w.err = ErrClosed
	}
	if w.file != nil {
		return w.file.discard()
	}
	return nil
}

// newBatchWriter starts the encoder on out (the pending file when file is
// non-nil). On error the file is removed and rb released.
func newBatchWriter(out io.Writer, file *pendingFile, rb *array.RecordBuilder, cfg Config) (*batchWriter, error) {
	sink, err := newBatchSink(out, rb.Schema(), cfg)
	if err != nil {
		rb.Release()
		if file != nil {
			file.discard()
		}
		return nil, err
	}
	return &batchWriter{cfg: cfg, rb: rb, sink: sink, file: file}, nil
}

// rowBuilder appends rows of one kind to the columns of its record builder.
type rowBuilder[R any] interface {
	// check returns an error wrapping ErrBadRow, naming the student, for a
	// row that would make a file consumers cannot read or trust.
	check(r *R) error
	append(r *R)
}

// rowWriter streams rows of one kind to a Parquet or Arrow IPC output; the
// mastery, trajectory and state writers are rowWriters with their own
// builder. It is not safe for concurrent use.
type rowWriter[R any] struct {
	b  rowBuilder[R]
	bw *batchWriter
}

func openRowWriter[R any](out io.Writer, file *pendingFile, b rowBuilder[R], rb *array.RecordBuilder, cfg Config) (rowWriter[R], error) {
	bw, err := newBatchWriter(out, file, rb, cfg)
	return rowWriter[R]{b: b, bw: bw}, err
}

// Write buffers rows and writes a record batch each time RowsPerBatch rows
// are buffered. Rows are checked first: if any is bad (the error wraps
// ErrBadRow and names the student), none of them is written. After a write
// error the output is unusable; Close then cleans up and returns that error.
func (w rowWriter[R]) Write(rows ...R) error {
	if err := w.bw.usable(); err != nil {
		return err
	}
	for i := range rows {
		if err := w.b.check(&rows[i]); err != nil {
			return err
		}
	}
	for i := range rows {
		w.b.append(&rows[i])
		if err := w.bw.rowAdded(); err != nil {
			return err
		}
	}
	return nil
}

// Close writes the buffered rows and the footer; the output is not a valid
// file until Close returns nil. Calling it again returns the same result.
func (w rowWriter[R]) Close() error { return w.bw.close() }

// Abort discards buffered rows without finishing the output, and removes a
// file made by a Create function. It is a no-op after Close.
func (w rowWriter[R]) Abort() error { return w.bw.abort() }

func rowError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRow}, args...)...)
}
