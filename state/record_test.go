package state

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestRecordRoundTrips(t *testing.T) {
	cases := []Record{
		{StudentID: "s1", ModelVersion: "dkt/1", Partition: -1, Offset: -1, Events: 8214, State: []float32{0.25, -1.5, 0}},
		{StudentID: "élève-42", ModelVersion: "dkt/12", Partition: 7, Offset: 1 << 40, Events: 1, State: make([]float32, 400)},
		{StudentID: "x", ModelVersion: "m/v", Partition: math.MaxInt32, Offset: math.MaxInt64, Events: math.MaxInt64,
			State: []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Copysign(0, -1))}},
	}
	for _, want := range cases {
		t.Run(want.StudentID, func(t *testing.T) {
			got, err := DecodeRecord([]byte(want.StudentID), want.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if got.StudentID != want.StudentID || got.ModelVersion != want.ModelVersion || got.Partition != want.Partition ||
				got.Offset != want.Offset || got.Events != want.Events || len(got.State) != len(want.State) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
			for i := range want.State { // bit for bit: -0 stays -0
				if math.Float32bits(got.State[i]) != math.Float32bits(want.State[i]) {
					t.Fatalf("state[%d] = %v, want %v", i, got.State[i], want.State[i])
				}
			}
		})
	}
}

// The wire format is read by other workers and dktscore versions: pin it.
func TestRecordEncodingIsVersionOneLittleEndian(t *testing.T) {
	r := Record{StudentID: "s", ModelVersion: "dkt/1", Partition: 2, Offset: 258, Events: 3, State: []float32{1, -2}}
	want := "444b5453" + "01" + // magic "DKTS", version 1
		"02000000" + "0201000000000000" + "0300000000000000" + // partition, offset, events
		"0500" + hex.EncodeToString([]byte("dkt/1")) + // model_version
		"02000000" + "0000803f" + "000000c0" // 2 floats: 1.0, -2.0
	if got := hex.EncodeToString(r.Encode()); got != want {
		t.Fatalf("Encode = %s\nwant     %s", got, want)
	}
}

func TestDecodeRecordNamesWhatIsWrong(t *testing.T) {
	good := Record{StudentID: "s", ModelVersion: "dkt/1", Partition: 0, Offset: 5, Events: 6, State: []float32{1, 2}}.Encode()
	// patch overwrites good's bytes from offset at (magic 0, version 4,
	// partition 5, offset 9, events 17).
	patch := func(at int, bytes ...byte) []byte {
		b := slices.Clone(good)
		copy(b[at:], bytes)
		return b
	}
	minusOne := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	minusTwo := []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	cases := []struct {
		name       string
		key, value []byte
		want       string
	}{
		{"empty key", nil, good, "key is empty"},
		{"key not UTF-8", []byte{0xff}, good, "not valid UTF-8"},
		{"not ours", []byte("s"), []byte(`{"student_id":"s"}`), "not a dktscore state record"},
		{"newer version", []byte("s"), patch(4, 2), "encoding version 2"},
		{"truncated state", []byte("s"), good[:len(good)-1], "should hold 2 floats"},
		{"trailing bytes", []byte("s"), append(slices.Clone(good), 0), "should hold 2 floats"},
		{"truncated header", []byte("s"), good[:10], "not a dktscore state record"},
		{"truncated model version", []byte("s"), good[:headerLen+2], "truncated"},
		{"negative events", []byte("s"), patch(17, minusOne...), "events -1"},
		{"partition below -1", []byte("s"), patch(5, minusTwo[:4]...), "partition -2"},
		{"offset below -1", []byte("s"), patch(9, minusTwo...), "offset -2"},
		{"empty state", []byte("s"), Record{ModelVersion: "dkt/1"}.Encode(), "state is empty"},
		{"empty model version", []byte("s"), Record{State: []float32{1}}.Encode(), "model_version"},
		{"NaN in state", []byte("s"), Record{ModelVersion: "dkt/1", State: []float32{float32(math.NaN())}}.Encode(), "state[0] is NaN"},
		{"Inf in state", []byte("s"), Record{ModelVersion: "dkt/1", State: []float32{0, float32(math.Inf(1))}}.Encode(), "state[1] is +Inf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeRecord(c.key, c.value)
			if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("DecodeRecord = %v, want ErrBadRecord saying %q", err, c.want)
			}
		})
	}
	if _, err := DecodeRecord([]byte("s"), nil); !errors.Is(err, ErrTombstone) || errors.Is(err, ErrBadRecord) {
		t.Fatalf("an empty value = %v, want ErrTombstone only", err)
	}
}

// FuzzDecodeRecord: no input panics, and whatever decodes re-encodes to the
// same bytes (the encoding is canonical, so a restored state is the one written).
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("s1"), Record{ModelVersion: "dkt/1", Partition: -1, Offset: -1, Events: 3, State: []float32{1, 2, 3}}.Encode())
	f.Add([]byte("s2"), Record{ModelVersion: "dkt/1", Partition: 4, Offset: 99, Events: 1, State: make([]float32, 400)}.Encode())
	f.Add([]byte("s3"), []byte("DKTS\x01"))
	f.Add([]byte(""), []byte{})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := DecodeRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) && !errors.Is(err, ErrTombstone) {
				t.Fatalf("error %v wraps neither ErrBadRecord nor ErrTombstone", err)
			}
			return
		}
		if r.StudentID != string(key) {
			t.Fatalf("StudentID %q, key %q", r.StudentID, key)
		}
		if again := r.Encode(); !bytes.Equal(again, value) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, value)
		}
	})
}
