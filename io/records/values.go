package records

import (
	"math"
	"strconv"
	"time"
)

// Number syntax, the same in every text format (dkt3, long CSV, JSONL, and
// JSON messages): a skill id is a decimal integer as JSON writes one, digits
// without leading zeros and with an optional leading minus (a negative id
// then fails the range check with its own message); a correctness flag is
// the digit 0 or 1. Everything else is
// rejected, among it "2.0", "1e0", "+1", "true", "0x1" and
// "0.9999999999999999999": reading them leniently would guess what the
// producer meant, and a float that rounds to an id scores the wrong skill.
// Text formats trim spaces and tabs around a field (" 1 " is 1); in JSON a
// value must be a number, so "1" in quotes is rejected. Parquet columns are
// typed: integer skill ids, integer or boolean correctness.

// parseInteger reads a decimal integer: an optional '-' and digits, no
// leading zero.
func parseInteger(t []byte) (int64, bool) {
	digits := t
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false // JSON cannot spell "007"; no format accepts it
	}
	v, err := strconv.ParseInt(string(t), 10, 64)
	if err != nil {
		// Only overflow is left: saturate, so that the range check, not a
		// "not an integer" message, rejects it.
		if t[0] == '-' {
			return math.MinInt64, true
		}
		return math.MaxInt64, true
	}
	return v, true
}

// parseFlag reads a correctness flag: exactly "0" or "1".
func parseFlag(t []byte) (int8, bool) {
	if len(t) == 1 && (t[0] == '0' || t[0] == '1') {
		return int8(t[0] - '0'), true
	}
	return 0, false
}

// tsKind separates timestamps that can be ordered against each other:
// numbers (epoch in whatever unit the file uses) and calendar times.
type tsKind uint8

const (
	tsNumber tsKind = iota + 1
	tsTime
)

// tsKey is a sortable timestamp. Integers stay exact (epoch nanoseconds
// exceed float64's 2^53); floats compare as floats.
type tsKey struct {
	kind  tsKind
	isInt bool
	i     int64
	f     float64
}

func (a tsKey) less(b tsKey) bool {
	if a.isInt && b.isInt {
		return a.i < b.i
	}
	return a.float() < b.float()
}

func (a tsKey) float() float64 {
	if a.isInt {
		return float64(a.i)
	}
	return a.f
}

// timeLayouts are tried after numbers; zone-less forms (as in ASSISTments
// exports) are read as UTC, which keeps their relative order.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

// parseTimestamp reads an integer or float epoch or an RFC3339 time.
func parseTimestamp(t []byte) (tsKey, bool) {
	s := string(t)
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return tsKey{kind: tsNumber, isInt: true, i: v}, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return tsKey{}, false
		}
		return tsKey{kind: tsNumber, f: f}, true
	}
	for _, layout := range timeLayouts {
		if tm, err := time.Parse(layout, s); err == nil {
			return timeKey(tm), true
		}
	}
	return tsKey{}, false
}

func timeKey(tm time.Time) tsKey {
	// UnixNano overflows outside 1678..2262; seconds plus fraction as float
	// keeps such (odd but parsable) times ordered.
	if y := tm.Year(); y > 1678 && y < 2262 {
		return tsKey{kind: tsTime, isInt: true, i: tm.UnixNano()}
	}
	return tsKey{kind: tsTime, f: float64(tm.Unix()) + float64(tm.Nanosecond())/1e9}
}
