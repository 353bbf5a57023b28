package columnar

import (
	"fmt"
	"strings"
)

// Format is an output file format.
type Format string

const (
	// FormatParquet writes Parquet with zstd compression.
	FormatParquet Format = "parquet"
	// FormatArrow writes the Arrow IPC file format (Feather v2), uncompressed.
	FormatArrow Format = "arrow"
)

// ParseFormat parses a format name as a user types it (case and surrounding
// spaces are ignored).
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatParquet, FormatArrow:
		return f, nil
	default:
		return "", fmt.Errorf("columnar: unknown output format %q: use %q or %q", s, FormatParquet, FormatArrow)
	}
}

// Ext is the conventional file extension of the format, with its dot.
func (f Format) Ext() string {
	switch f {
	case FormatParquet:
		return ".parquet"
	case FormatArrow:
		return ".arrow"
	default:
		return ""
	}
}
