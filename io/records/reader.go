package records

import (
	"bufio"
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
// SniffFormat on the opened file, which is then decoded from where the sniff
// left it: the file is opened once, so a named pipe works. An input that
// cannot be opened or read at all gives one error naming the path.
func Open(path string, format Format, opts Options) (Reader, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("records: cannot open input %s: %w", path, pathErrCause(err))
	}
	r, err := NewFileReader(f, nil, path, format, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &closingReader{Reader: r, file: f}, nil
}

// NewFileReader decodes an open file (a regular file, a named pipe or stdin)
// in format, or in the format SniffFormat finds when format is "". The text
// formats are read front to back once through src (f itself when src is nil,
// or f wrapped, e.g. to count bytes) and one buffer, so that what the sniff
// peeked at is decoded too; Parquet is read from f's end, so f must be a
// regular file. Close does not close f.
func NewFileReader(f *os.File, src io.Reader, name string, format Format, opts Options) (Reader, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if src == nil {
		src = f
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("records: cannot read input %s: %w", name, pathErrCause(err))
	}
	if st.IsDir() {
		return nil, fmt.Errorf("records: input %s is a directory: pass a file", name)
	}
	br := bufio.NewReaderSize(src, SniffBufferSize)
	if format == "" {
		if format, err = SniffFormat(name, br); err != nil {
			return nil, err
		}
	}
	if format == FormatParquet {
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("records: %s is %s: Parquet is read from its end, so it must be a regular file; save it to a file and pass that to --input", name, streamKind(name, st.Mode()))
		}
		return newParquetReader(f, name, opts, parquetBatchRows)
	}
	return newReader(br, name, format, opts)
}

func streamKind(name string, m fs.FileMode) string {
	switch {
	case name == "-":
		return "stdin"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	}
	return "not a regular file"
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
