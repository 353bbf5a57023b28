// Package state holds what event mode carries from one event of a student to
// the next: the LSTM state, where it came from, and its changelog encoding.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Record is one student's carried state: the value of the changelog topic,
// keyed by student_id.
type Record struct {
	StudentID    string
	ModelVersion string // "name/version" whose weights produced State; a state is only valid for that version
	Partition    int32  // input partition whose events built it (-1: bootstrap)
	Offset       int64  // input offset of the last event applied (-1: bootstrap from history)
	Events       int64  // interactions applied in total (history length)
	State        []float32
}

// Wire format, version 1 (all integers and floats little-endian):
//
//	magic "DKTS" | version byte 1 | partition int32 | offset int64 | events int64 |
//	model_version length uint16 | model_version bytes | state length uint32 | state float32 × length
//
// The magic tells a changelog value apart from anything else produced to the
// topic by mistake; the version lets a later layout be read next to this one.
const (
	recordMagic   = "DKTS"
	recordVersion = 1
	headerLen     = len(recordMagic) + 1 + 4 + 8 + 8 + 2 // through model_version's length
	maxVersionLen = math.MaxUint16
)

// ErrTombstone is returned by DecodeRecord for an empty value: a compacted
// topic's deletion marker, not a state.
var ErrTombstone = errors.New("state: tombstone (empty value): the student's state was deleted")

// ErrBadRecord is wrapped by every other DecodeRecord error.
var ErrBadRecord = errors.New("state: bad changelog record")

// Encode returns the changelog value of r (the key is r.StudentID).
func (r Record) Encode() []byte {
	version := r.ModelVersion
	if len(version) > maxVersionLen {
		version = version[:maxVersionLen] // DecodeRecord then reports a mismatched version, never a misread
	}
	buf := make([]byte, 0, headerLen+len(version)+4+4*len(r.State))
	buf = append(buf, recordMagic...)
	buf = append(buf, recordVersion)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(r.Partition))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.Offset))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.Events))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(version)))
	buf = append(buf, version...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(r.State)))
	for _, v := range r.State {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	return buf
}

// DecodeRecord reads a changelog record. key is the student_id. Every error
// but ErrTombstone wraps ErrBadRecord and says what is wrong.
func DecodeRecord(key, value []byte) (Record, error) {
	bad := func(format string, args ...any) (Record, error) {
		// The key (a student id) stays out of the message: it ends in logs.
		return Record{}, fmt.Errorf("%w (%d-byte value): "+format, append([]any{ErrBadRecord, len(value)}, args...)...)
	}
	if len(key) == 0 {
		return bad("the key is empty; it must be the student_id")
	}
	if !utf8.Valid(key) {
		return bad("the key is not valid UTF-8; student_id must be UTF-8")
	}
	if len(value) == 0 {
		return Record{}, ErrTombstone
	}
	if len(value) < headerLen || string(value[:len(recordMagic)]) != recordMagic {
		return bad("not a dktscore state record (no %q header); is another producer writing to the changelog topic?", recordMagic)
	}
	if v := value[len(recordMagic)]; v != recordVersion {
		return bad("encoding version %d; this dktscore reads version %d: upgrade dktscore, or re-bootstrap the changelog", v, recordVersion)
	}
	p := value[len(recordMagic)+1:]
	r := Record{StudentID: string(key)}
	r.Partition = int32(binary.LittleEndian.Uint32(p))
	r.Offset = int64(binary.LittleEndian.Uint64(p[4:]))
	r.Events = int64(binary.LittleEndian.Uint64(p[12:]))
	versionLen := int(binary.LittleEndian.Uint16(p[20:]))
	p = p[22:]
	if len(p) < versionLen+4 {
		return bad("truncated: model_version needs %d bytes and the state length 4 more, %d left", versionLen, len(p))
	}
	r.ModelVersion = string(p[:versionLen])
	n := int(binary.LittleEndian.Uint32(p[versionLen:]))
	p = p[versionLen+4:]
	switch {
	case r.ModelVersion == "" || !utf8.ValidString(r.ModelVersion):
		return bad("model_version %q is empty or not UTF-8", r.ModelVersion)
	case r.Partition < -1:
		return bad("partition %d is negative (only -1, bootstrap, is allowed)", r.Partition)
	case r.Offset < -1:
		return bad("offset %d is negative (only -1, bootstrap, is allowed)", r.Offset)
	case r.Events < 0:
		return bad("events %d is negative", r.Events)
	case n == 0:
		return bad("the state is empty")
	case len(p) != 4*n:
		return bad("the state should hold %d floats (%d bytes) but %d bytes follow", n, 4*n, len(p))
	}
	r.State = make([]float32, n)
	for i := range r.State {
		v := math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return bad("state[%d] is %v; an LSTM state is finite", i, v)
		}
		r.State[i] = v
	}
	return r, nil
}
