package records

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// defaultMaxLineBytes bounds one line of a text input. The longest real DKT
// line (8,214 interactions) is about 30 KB; 16 MiB leaves room for far longer
// histories while keeping a corrupt file without newlines from exhausting memory.
const defaultMaxLineBytes = 16 << 20

// utf8BOM is the byte order mark some tools put at the start of a UTF-8 file.
const utf8BOM = "\ufeff"

// lineReader streams lines of any length up to max bytes. A longer line is
// reported as tooLong (its rest is skipped, not buffered) so that decoders can
// reject it and go on with the next line.
type lineReader struct {
	br       *bufio.Reader
	name     string
	max      int
	line     int // number of the line last returned
	buf      []byte
	tooLong  bool
	unreadOK bool // the next call returns the current line again
}

func newLineReader(r io.Reader, name string, max int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10), name: name, max: max}
}

// peek surfaces read errors of an unreadable input before the first record.
func (r *lineReader) peek() error {
	if _, err := r.br.Peek(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("records: cannot read input %s: %w", r.name, err)
	}
	return nil
}

// next returns the next line without its "\n" or "\r\n" terminator; the slice
// is valid until the following call.
func (r *lineReader) next() (text []byte, tooLong bool, err error) {
	if r.unreadOK {
		r.unreadOK = false
		return r.buf, r.tooLong, nil
	}
	r.buf, r.tooLong = r.buf[:0], false
	sawAny := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(chunk) > 0 {
			sawAny = true
		}
		if room := r.max - len(r.buf); len(chunk) <= room {
			r.buf = append(r.buf, chunk...)
		} else {
			r.buf = append(r.buf, chunk[:max(room, 0)]...)
			r.tooLong = true
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if !sawAny {
				return nil, false, io.EOF
			}
			break
		}
		return nil, false, fmt.Errorf("records: cannot read input %s after line %d: %w", r.name, r.line, err)
	}
	r.line++
	if r.line == 1 {
		// A UTF-8 byte order mark (Excel and Windows tools write one) is
		// not part of the first record, whatever the format.
		r.buf = bytes.TrimPrefix(r.buf, []byte(utf8BOM))
	}
	r.buf = bytes.TrimSuffix(r.buf, []byte("\n"))
	r.buf = bytes.TrimSuffix(r.buf, []byte("\r"))
	return r.buf, r.tooLong, nil
}

// unread makes the next call return the line just returned, again.
func (r *lineReader) unread() { r.unreadOK = true }

func (r *lineReader) tooLongLine(line int) *problem {
	return problemf(RejectTooLarge, "line %d is longer than the %s limit on one line; such a line is usually a file without line breaks or in another format (check --input-format); "+
		"a history this long can be given in the long CSV or Parquet layout (one row per interaction), which has no limit per student", line, byteSize(r.max))
}

// byteSize renders a byte count for messages: "16 MiB", "50 bytes".
func byteSize(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// quoteSample quotes the start of a bad value for a reject reason, so that a
// megabyte of junk does not end up in the rejects file.
func quoteSample(b []byte) string {
	const limit = 40
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}
