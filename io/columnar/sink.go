package columnar

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// batchSink is a format encoder: it takes record batches and finishes the
// file (footer) on close.
type batchSink interface {
	write(rec arrow.RecordBatch) error
	close() error
	// abort frees the encoder's buffers without writing anything more.
	abort()
}

// newBatchSink starts an encoder of cfg.Format on w. w is wrapped in a
// bufio.Writer, which also hides any Close method: pqarrow closes an
// io.Closer it is given, and the caller, not the encoder, owns w.
func newBatchSink(w io.Writer, schema *arrow.Schema, cfg Config) (batchSink, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	mem := cfg.allocator()
	switch cfg.Format {
	case FormatParquet:
		props := parquet.NewWriterProperties(
			parquet.WithCompression(compress.Codecs.Zstd),
			parquet.WithAllocator(mem),
			// One Write is one row group; never split a batch further.
			parquet.WithMaxRowGroupLength(int64(cfg.rowsPerBatch())),
		)
		arrProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem))
		fw, err := pqarrow.NewFileWriter(schema, bw, props, arrProps)
		if err != nil {
			return nil, fmt.Errorf("columnar: start parquet writer: %w", err)
		}
		return &parquetSink{fw: fw, bw: bw}, nil
	case FormatArrow:
		fw, err := ipc.NewFileWriter(bw, ipc.WithSchema(schema), ipc.WithAllocator(mem))
		if err != nil {
			return nil, fmt.Errorf("columnar: start arrow ipc file writer: %w", err)
		}
		return &arrowFileSink{fw: fw, bw: bw}, nil
	default:
		return nil, fmt.Errorf("%w: Format is %q", ErrInvalidConfig, cfg.Format)
	}
}

type parquetSink struct {
	fw *pqarrow.FileWriter
	bw *bufio.Writer
}

func (s *parquetSink) write(rec arrow.RecordBatch) error {
	if err := s.fw.Write(rec); err != nil {
		return fmt.Errorf("columnar: write parquet row group: %w", err)
	}
	return nil
}

func (s *parquetSink) close() error {
	if err := s.fw.Close(); err != nil {
		return fmt.Errorf("columnar: finish parquet file: %w", err)
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("columnar: flush parquet file: %w", err)
	}
	return nil
}

func (s *parquetSink) abort() {
	s.bw.Reset(io.Discard)
	_ = s.fw.Close() // writes only to io.Discard; closing frees its buffers
}

type arrowFileSink struct {
	fw *ipc.FileWriter
	bw *bufio.Writer
}

func (s *arrowFileSink) write(rec arrow.RecordBatch) error {
	if err := s.fw.Write(rec); err != nil {
		return fmt.Errorf("columnar: write arrow record batch: %w", err)
	}
	return nil
}

func (s *arrowFileSink) close() error {
	if err := s.fw.Close(); err != nil {
		return fmt.Errorf("columnar: finish arrow ipc file: %w", err)
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("columnar: flush arrow ipc file: %w", err)
	}
	return nil
}

func (s *arrowFileSink) abort() {
	s.bw.Reset(io.Discard)
	_ = s.fw.Close() // writes only to io.Discard
}

// pendingFile is an output file being written under a temporary name in the
// destination's directory. commit renames it into place only after the
// footer is written and synced, so a reader never sees a truncated file at
// path, and a failed write leaves nothing behind.
type pendingFile struct {
	f    *os.File
	path string
}

func createPendingFile(path string) (*pendingFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.partial")
	if err != nil {
		return nil, fmt.Errorf("columnar: create output %s: %w (check the directory exists and is writable)", path, err)
	}
	// CreateTemp makes the file private; results are meant to be shared.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("columnar: create output %s: %w", path, err)
	}
	return &pendingFile{f: f, path: path}, nil
}

func (p *pendingFile) commit() error {
	tmp := p.f.Name()
	if err := p.f.Sync(); err != nil {
		p.f.Close()
		os.Remove(tmp)
		return fmt.Errorf("columnar: sync output %s: %w", p.path, err)
	}
	if err := p.f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("columnar: close output %s: %w", p.path, err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("columnar: move finished output into place at %s: %w", p.path, err)
	}
	return nil
}

func (p *pendingFile) discard() error {
	tmp := p.f.Name()
	return errors.Join(p.f.Close(), os.Remove(tmp))
}
