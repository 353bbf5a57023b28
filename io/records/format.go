package records

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Format names an input layout.
type Format string

const (
	FormatDKT3    Format = "dkt3"    // DKT 3-line CSV: count, skill ids, correctness flags
	FormatCSV     Format = "csv"     // long CSV: one interaction per row, header student_id,skill_id,correct[,timestamp]
	FormatJSONL   Format = "jsonl"   // JSON Lines: {"student_id", "skills", "correct"} per line
	FormatParquet Format = "parquet" // Parquet in the long layout of FormatCSV
)

const formatList = "dkt3, csv, jsonl or parquet"

// ParseFormat reads a format name as given on the command line (case-insensitive;
// "ndjson" and "pq" are accepted as aliases).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "dkt3":
		return FormatDKT3, nil
	case "csv":
		return FormatCSV, nil
	case "jsonl", "ndjson":
		return FormatJSONL, nil
	case "parquet", "pq":
		return FormatParquet, nil
	}
	return "", fmt.Errorf("records: unknown input format %q: use %s", s, formatList)
}

// sniffLimit bounds how much of the input SniffFormat looks at: the first
// line of a dkt3 file is a short count and a long-CSV header is short too.
const sniffLimit = 64 << 10

// SniffBufferSize is the bufio.Reader size SniffFormat needs to see a whole
// first line; the text decoders reuse a reader of this size as it is, so the
// bytes peeked for sniffing are decoded, not lost.
const SniffBufferSize = sniffLimit

// DetectFormat opens path and infers its format with SniffFormat. Callers
// that go on to read the input should open it once and call SniffFormat on
// their own reader instead: a named pipe or stdin can be read only once.
func DetectFormat(path string) (Format, error) {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	case ".parquet", ".pq":
		return FormatParquet, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("records: cannot open input %s: %w", path, pathErrCause(err))
	}
	defer f.Close()
	return SniffFormat(path, bufio.NewReaderSize(f, SniffBufferSize))
}

// SniffFormat infers the format of the input called name from its extension
// and, where that is ambiguous, from the start of its content, which it only
// peeks at: br still yields every byte, so the same reader goes to the
// decoder (NewReader). .jsonl/.ndjson and .parquet/.pq decide by themselves.
// .csv and .txt are used by both dkt3 and long CSV, so their first line
// decides: a header naming a student_id column means csv, a bare integer
// means dkt3. A name without an extension ("-" for stdin) is sniffed the same
// way, and may also be JSON Lines (first byte '{') or Parquet (magic PAR1).
func SniffFormat(name string, br *bufio.Reader) (Format, error) {
	ext := strings.ToLower(filepath.Ext(name))
	if name == "-" {
		ext = ""
	}
	switch ext {
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	case ".parquet", ".pq":
		return FormatParquet, nil
	case ".csv", ".txt", "":
	default:
		return "", fmt.Errorf("records: cannot infer the format of %s from its extension %q: pass --input-format (%s)", name, ext, formatList)
	}
	line, err := peekLine(br)
	if err != nil {
		return "", fmt.Errorf("records: cannot infer the format of %s: cannot read its first line (%v): pass --input-format (%s)", name, err, formatList)
	}
	first := strings.TrimSpace(strings.TrimPrefix(string(line), utf8BOM))
	if _, ok := parseCount([]byte(first)); ok {
		return FormatDKT3, nil
	}
	for _, col := range splitHeader(first) {
		if col == colStudent {
			return FormatCSV, nil
		}
	}
	if ext == "" {
		switch {
		case strings.HasPrefix(first, "PAR1"):
			return FormatParquet, nil
		case strings.HasPrefix(first, "{"):
			return FormatJSONL, nil
		}
	}
	return "", fmt.Errorf("records: cannot infer the format of %s: its first line %s is neither a long-CSV header with a student_id column nor a DKT 3-line count: pass --input-format (%s)", name, quoteSample([]byte(first)), formatList)
}

// peekLine returns the input's first line (up to sniffLimit bytes) without
// consuming it. It asks for one more byte at a time past what is buffered,
// so that on a pipe it returns as soon as the line has arrived instead of
// waiting for a full buffer.
func peekLine(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		buf, err := br.Peek(min(n, sniffLimit, br.Size()))
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i], nil
		}
		if len(buf) >= min(sniffLimit, br.Size()) {
			return buf, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				return buf, nil
			}
			if errors.Is(err, io.EOF) {
				return nil, errors.New("the input is empty")
			}
			return nil, err
		}
	}
}

// splitHeader returns the normalised column names of a long-CSV header line.
func splitHeader(line string) []string {
	fields, err := splitCSVLine([]byte(line), nil)
	if err != nil {
		return nil
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = strings.ToLower(string(bytes.TrimSpace(f)))
	}
	return names
}
