package columnar

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMasteryRoundTrip(t *testing.T) {
	for _, format := range []Format{FormatParquet, FormatArrow} {
		for _, withSource := range []bool{false, true} {
			for _, n := range []int{0, 1, 3, 10} {
				t.Run(fmt.Sprintf("%s/source=%v/rows=%d", format, withSource, n), func(t *testing.T) {
					cfg, mem := testConfig(t, format, withSource)
					rows := makeMasteryRows(n, cfg.NumSkills)
					path := filepath.Join(t.TempDir(), "mastery"+format.Ext())

					w, err := CreateMasteryFile(path, cfg)
					if err != nil {
						t.Fatal(err)
					}
					// Two calls exercise buffering across Write calls.
					half := len(rows) / 2
					if err := w.Write(rows[:half]...); err != nil {
						t.Fatal(err)
					}
					if err := w.Write(rows[half:]...); err != nil {
						t.Fatal(err)
					}
					if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("%s exists before Close (err %v); readers could see a partial file", path, err)
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					mem.AssertSize(t, 0)

					tbl, batches := readFile(t, path, format)
					defer tbl.Release()
					if want := (n + cfg.RowsPerBatch - 1) / cfg.RowsPerBatch; batches != want {
						t.Errorf("file has %d batches/row groups, want %d", batches, want)
					}
					checkMasteryTable(t, tbl, cfg, rows, func(i int) time.Time { return expectedScoredAt(i, cfg.RowsPerBatch) })
					entries, _ := os.ReadDir(filepath.Dir(path))
					if len(entries) != 1 {
						t.Errorf("output dir holds %d entries, want only the result: %v", len(entries), entries)
					}
				})
			}
		}
	}
}

// A worker that reloads models between batches writes rows of several
// versions into one file; each row keeps its own.
func TestMasteryRowModelVersionOverridesConfig(t *testing.T) {
	cfg, _ := testConfig(t, "", false)
	rows := makeMasteryRows(4, cfg.NumSkills)
	rows[1].ModelVersion = "dkt/2"
	rows[3].ModelVersion = "dkt/3"
	data, err := EncodeIPCStream(cfg, rows, clockStart)
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := readStream(t, data)
	defer tbl.Release()
	checkMasteryTable(t, tbl, cfg, rows, func(int) time.Time { return clockStart })
}

func TestNewMasteryWriterToBuffer(t *testing.T) {
	for _, format := range []Format{FormatParquet, FormatArrow} {
		t.Run(string(format), func(t *testing.T) {
			cfg, mem := testConfig(t, format, true)
			cfg.RowsPerBatch = 0 // the default: everything fits one batch
			rows := makeMasteryRows(7, cfg.NumSkills)
			var buf bytes.Buffer
			w, err := NewMasteryWriter(&buf, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rows...); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Errorf("second Close: %v, want nil", err)
			}
			if err := w.Write(rows...); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close: %v, want ErrClosed", err)
			}
			mem.AssertSize(t, 0)

			path := filepath.Join(t.TempDir(), "out"+format.Ext())
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			tbl, batches := readFile(t, path, format)
			defer tbl.Release()
			if batches != 1 {
				t.Errorf("%d batches, want 1", batches)
			}
			checkMasteryTable(t, tbl, cfg, rows, func(int) time.Time { return clockStart })
		})
	}
}

func TestTrajectoryRoundTrip(t *testing.T) {
	for _, format := range []Format{FormatParquet, FormatArrow} {
		t.Run(string(format), func(t *testing.T) {
			cfg, mem := testConfig(t, format, true) // WithSource does not apply to trajectories
			rows := makeStepRows(3, 4, cfg.NumSkills)
			path := filepath.Join(t.TempDir(), "trajectory"+format.Ext())
			w, err := CreateTrajectoryFile(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if err := w.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			mem.AssertSize(t, 0)

			tbl, batches := readFile(t, path, format)
			defer tbl.Release()
			if want := (len(rows) + 2) / 3; batches != want {
				t.Errorf("%d batches, want %d", batches, want)
			}
			checkTrajectoryTable(t, tbl, cfg, rows)
		})
	}
}

func TestEncodeIPCStream(t *testing.T) {
	for _, withSource := range []bool{false, true} {
		for _, n := range []int{0, 5} {
			t.Run(fmt.Sprintf("source=%v/rows=%d", withSource, n), func(t *testing.T) {
				cfg, mem := testConfig(t, "", withSource) // Format is not needed for a stream
				rows := makeMasteryRows(n, cfg.NumSkills)
				at := clockStart.Add(time.Hour)
				data, err := EncodeIPCStream(cfg, rows, at)
				if err != nil {
					t.Fatal(err)
				}
				mem.AssertSize(t, 0)
				tbl, batches := readStream(t, data)
				defer tbl.Release()
				if batches != 1 {
					t.Errorf("stream holds %d record batches, want 1", batches)
				}
				checkMasteryTable(t, tbl, cfg, rows, func(int) time.Time { return at })
			})
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{NumSkills: 124, ModelVersion: "v1", Format: FormatParquet}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	tests := []struct {
		name  string
		cfg   Config
		wants []string
	}{
		{"zero value", Config{}, []string{"NumSkills is 0", "ModelVersion is empty", `Format is ""`}},
		{"every problem", Config{NumSkills: -3, ModelVersion: "  ", Format: "csv", RowsPerBatch: -1},
			[]string{"NumSkills is -3", "ModelVersion is empty", `Format is "csv"`, "RowsPerBatch is -1"}},
		{"format spelled by a user", Config{NumSkills: 1, ModelVersion: "v", Format: "Parquet"}, []string{`Format is "Parquet"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if _, err := CreateMasteryFile(filepath.Join(t.TempDir(), "x.parquet"), tt.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("CreateMasteryFile accepted a bad config: %v", err)
			}
			if _, err := NewTrajectoryWriter(&bytes.Buffer{}, tt.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewTrajectoryWriter accepted a bad config: %v", err)
			}
		})
	}
	if _, err := EncodeIPCStream(Config{ModelVersion: "v"}, nil, time.Now()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("EncodeIPCStream accepted NumSkills=0: %v", err)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"parquet": FormatParquet, " Arrow ": FormatArrow, "PARQUET": FormatParquet} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseFormat("csv"); err == nil || !strings.Contains(err.Error(), `"csv"`) {
		t.Errorf("ParseFormat(csv) = %v, want an error naming the input", err)
	}
}

func TestWriteRejectsBadRows(t *testing.T) {
	for _, format := range []Format{FormatParquet, FormatArrow} {
		t.Run(string(format), func(t *testing.T) {
			cfg, mem := testConfig(t, format, false)
			path := filepath.Join(t.TempDir(), "m"+format.Ext())
			w, err := CreateMasteryFile(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			good := makeMasteryRows(2, cfg.NumSkills)
			if err := w.Write(good[0]); err != nil {
				t.Fatal(err)
			}
			bad := MasteryRow{StudentID: "alice-42", SeqLen: 3, Mastery: make([]float32, cfg.NumSkills+1)}
			err = w.Write(good[1], bad)
			if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), `"alice-42"`) || !strings.Contains(err.Error(), "num_skills=5") {
				t.Fatalf("Write(bad) = %v, want ErrBadRow naming alice-42 and num_skills", err)
			}
			// The writer stays usable, and the call with the bad row wrote nothing.
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			mem.AssertSize(t, 0)
			tbl, _ := readFile(t, path, format)
			defer tbl.Release()
			checkMasteryTable(t, tbl, cfg, good[:1], func(int) time.Time { return clockStart })

			cfg2, mem2 := testConfig(t, format, false)
			tw, err := NewTrajectoryWriter(&bytes.Buffer{}, cfg2)
			if err != nil {
				t.Fatal(err)
			}
			for _, bad := range []StepRow{
				{StudentID: "bob", Step: 7, Mastery: make([]float32, 2)},
				{StudentID: "bob", Step: 8, Correct: 2, Mastery: make([]float32, cfg2.NumSkills)},
			} {
				if err := tw.Write(bad); !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), `"bob" step`) {
					t.Errorf("trajectory Write(%+v) = %v, want ErrBadRow naming bob", bad, err)
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			mem2.AssertSize(t, 0)
		})
	}
	if _, err := EncodeIPCStream(Config{NumSkills: 2, ModelVersion: "v"}, []MasteryRow{{StudentID: "carol", Mastery: []float32{1}}}, time.Now()); !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), "carol") {
		t.Errorf("EncodeIPCStream(bad row) = %v, want ErrBadRow naming carol", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	for _, format := range []Format{FormatParquet, FormatArrow} {
		t.Run(string(format), func(t *testing.T) {
			cfg, mem := testConfig(t, format, false)
			dir := t.TempDir()
			w, err := CreateMasteryFile(filepath.Join(dir, "m"+format.Ext()), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(makeMasteryRows(7, cfg.NumSkills)...); err != nil { // two batches written, one buffered
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); !errors.Is(err, ErrClosed) {
				t.Errorf("Close after Abort = %v, want ErrClosed", err)
			}
			mem.AssertSize(t, 0)
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Abort left %v", entries)
			}
		})
	}
}

// failingWriter fails every write after the first limit bytes.
type failingWriter struct{ limit int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		return 0, errors.New("disk full")
	}
	f.limit -= len(p)
	return len(p), nil
}

func TestWriteErrorIsSticky(t *testing.T) {
	for _, format := range []Format{FormatParquet, FormatArrow} {
		t.Run(string(format), func(t *testing.T) {
			cfg, mem := testConfig(t, format, false)
			cfg.RowsPerBatch = 1000 // fills bufio's 64 KiB buffer before the first batch
			cfg.NumSkills = 200
			w, err := NewMasteryWriter(&failingWriter{limit: 10}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = w.Write(makeMasteryRows(1000, cfg.NumSkills)...)
			if err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Fatalf("Write = %v, want the sink's error", err)
			}
			if err2 := w.Write(makeMasteryRows(1, cfg.NumSkills)...); err2 == nil {
				t.Error("Write after a failed write succeeded")
			}
			if err := w.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Errorf("Close = %v, want the write error", err)
			}
			// pqarrow v18.8.0 does not release its column writers' buffers
			// when a row group fails to write (FileWriter.Write closes itself
			// early); with the default Go allocator the GC reclaims them.
			if format == FormatArrow {
				mem.AssertSize(t, 0)
			}
		})
	}
}
