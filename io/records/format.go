package records

import (
	"bufio"
	"bytes"
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

// sniffLimit bounds how much of a .csv/.txt file DetectFormat reads: the first
// line of a dkt3 file is a short count and a long-CSV header is short too.
const sniffLimit = 64 << 10

// DetectFormat infers the format from the file extension; .csv and .txt are
// ambiguous (both dkt3 and long CSV use them), so their first line decides: a
// header naming a student_id column means csv, a bare integer means dkt3.
func DetectFormat(path string) (Format, error) {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	case ".parquet", ".pq":
		return FormatParquet, nil
	case ".csv", ".txt":
	default:
		return "", fmt.Errorf("records: cannot infer the format of %s from its extension %q: pass --input-format (%s)", path, ext, formatList)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("records: cannot open input %s: %w", path, pathErrCause(err))
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(io.LimitReader(f, sniffLimit), 4096).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("records: cannot infer the format of %s: cannot read its first line (%v): pass --input-format (%s)", path, err, formatList)
	}
	first := strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
	if _, ok := parseCount([]byte(first)); ok {
		return FormatDKT3, nil
	}
	for _, name := range splitHeader(first) {
		if name == colStudent {
			return FormatCSV, nil
		}
	}
	return "", fmt.Errorf("records: cannot infer the format of %s: its first line %s is neither a long-CSV header with a student_id column nor a DKT 3-line count: pass --input-format (%s)", path, quoteSample([]byte(first)), formatList)
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
