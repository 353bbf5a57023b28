package records

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Options bounds what decoders accept.
type Options struct {
	// NumSkills is the model's skill count; skill ids must lie in [0, NumSkills).
	NumSkills int
	// MaxLineBytes bounds one line of a text input (0: 16 MiB). A longer line is
	// rejected with its record, never buffered whole.
	MaxLineBytes int
}

func (o Options) validate() error {
	var errs []error
	if o.NumSkills <= 0 {
		errs = append(errs, fmt.Errorf("Options.NumSkills is %d: set it to the model's num_skills (> 0)", o.NumSkills))
	}
	if o.MaxLineBytes < 0 {
		errs = append(errs, fmt.Errorf("Options.MaxLineBytes is %d: use 0 for the default or a positive byte count", o.MaxLineBytes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("records: %w", errors.Join(errs...))
	}
	return nil
}

func (o Options) maxLine() int {
	if o.MaxLineBytes == 0 {
		return defaultMaxLineBytes
	}
	return o.MaxLineBytes
}

// Reader streams validated sequences out of one input.
type Reader interface {
	// Next returns the next valid sequence. A bad record yields a *RejectError
	// (use errors.As); the reader stays usable and Next continues with the
	// following record. io.EOF at the end. Any other error is fatal: the input
	// cannot be read further.
	Next() (Sequence, error)
	// Close releases the reader; for Open it also closes the file.
	Close() error
}

// Open opens path and returns a reader for format; format "" detects it with
// DetectFormat. An input that cannot be opened or read at all gives one error
// naming the path.
func Open(path string, format Format, opts Options) (Reader, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if format == "" {
		var err error
		if format, err = DetectFormat(path); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("records: cannot open input %s: %w", path, pathErrCause(err))
	}
	if st, err := f.Stat(); err != nil {
		f.Close()
		return nil, fmt.Errorf("records: cannot read input %s: %w", path, pathErrCause(err))
	} else if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("records: input %s is a directory: pass a file", path)
	}
	r, err := newReader(f, path, format, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &closingReader{Reader: r, file: f}, nil
}

// pathErrCause drops the *fs.PathError wrapper, whose text repeats the path
// our own message already names.
func pathErrCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

type closingReader struct {
	Reader
	file *os.File
}

func (c *closingReader) Close() error {
	return errors.Join(c.Reader.Close(), c.file.Close())
}

// NewReader decodes r; name is used in messages. Close does not close r.
// Parquet needs random access: r must implement io.ReaderAt and io.Seeker
// (an *os.File does).
func NewReader(r io.Reader, name string, format Format, opts Options) (Reader, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return newReader(r, name, format, opts)
}

func newReader(r io.Reader, name string, format Format, opts Options) (Reader, error) {
	switch format {
	case FormatDKT3:
		return newDKT3Reader(r, name, opts)
	case FormatCSV:
		return newCSVReader(r, name, opts)
	case FormatJSONL:
		return newJSONLReader(r, name, opts)
	case FormatParquet:
		return newParquetReader(r, name, opts, parquetBatchRows)
	}
	return nil, fmt.Errorf("records: %s: unknown input format %q: use %s", name, format, formatList)
}
