package columnar

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func makeStateRows(n, size int) []StateRow {
	rows := make([]StateRow, n)
	for i := range rows {
		rows[i] = StateRow{StudentID: "stu-" + string(rune('a'+i)), Events: int64(10 * (i + 1)), State: make([]float32, size)}
		for k := range rows[i].State {
			rows[i].State[k] = float32(math.Sin(float64(i*size+k))) / 3
		}
	}
	rows[1].ModelVersion = "dkt/2" // a row may name its own version
	return rows
}

func readAllStates(t *testing.T, path string) []StateRow {
	t.Helper()
	r, err := OpenStateFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []StateRow
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
}

func TestStateFileRoundTripsAndPyarrowAndDuckDBReadIt(t *testing.T) {
	const size = 6
	cfg := Config{NumSkills: 124, ModelVersion: "dkt/1", Format: FormatParquet, RowsPerBatch: 2}
	rows := makeStateRows(5, size)
	path := filepath.Join(t.TempDir(), "states.parquet")
	w, err := CreateStateFile(path, cfg, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rows...); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	got := readAllStates(t, path)
	if len(got) != len(rows) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(rows))
	}
	for i, r := range rows {
		version := r.ModelVersion
		if version == "" {
			version = cfg.ModelVersion
		}
		g := got[i]
		if g.StudentID != r.StudentID || g.ModelVersion != version || g.Events != r.Events || !equalFloat32s(g.State, r.State) {
			t.Fatalf("row %d: read %+v, wrote %+v", i, g, r)
		}
	}

	// pyarrow and DuckDB, the consumers users have, read the same values.
	python, _ := filepath.Abs("../../.venv/bin/python")
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("no project Python at %s: run `make setup` first", python)
	}
	const script = `
import json, sys, duckdb, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
d = duckdb.sql(f"select student_id, model_version, events, state from '{sys.argv[1]}'").fetchall()
print(json.dumps({"schema": str(t.schema.field("state").type), "meta": t.schema.metadata[b"state_size"].decode(),
                  "pyarrow": t.to_pylist(), "duckdb": [list(r) for r in d]}))`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("pyarrow/duckdb: %v", err)
	}
	var read struct {
		Schema, Meta string
		Pyarrow      []map[string]any
		DuckDB       [][]any
	}
	if err := json.Unmarshal(out, &read); err != nil {
		t.Fatal(err)
	}
	if read.Schema != "list<element: float>" && read.Schema != "list<item: float>" || read.Meta != "6" {
		t.Fatalf("pyarrow sees state as %s, state_size %s", read.Schema, read.Meta)
	}
	for i, r := range rows {
		for who, values := range map[string][]any{
			"pyarrow": {read.Pyarrow[i]["student_id"], read.Pyarrow[i]["events"], read.Pyarrow[i]["state"]},
			"duckdb":  {read.DuckDB[i][0], read.DuckDB[i][2], read.DuckDB[i][3]},
		} {
			state := values[2].([]any)
			if values[0] != r.StudentID || values[1] != float64(r.Events) || len(state) != size {
				t.Fatalf("%s row %d: %v, wrote %+v", who, i, values, r)
			}
			for k, v := range state { // float32 widened to float64 is exact
				if v.(float64) != float64(r.State[k]) {
					t.Fatalf("%s row %d state[%d] = %v, wrote %v", who, i, k, v, r.State[k])
				}
			}
		}
	}
}

func TestStateWriterRejectsBadRows(t *testing.T) {
	cfg := Config{NumSkills: 124, ModelVersion: "dkt/1", Format: FormatParquet}
	w, err := CreateStateFile(filepath.Join(t.TempDir(), "s.parquet"), cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, c := range []struct {
		row  StateRow
		want string
	}{
		{StateRow{StudentID: "a", State: make([]float32, 3)}, "state has 3 values, want the model's state size 4"},
		{StateRow{StudentID: "", State: make([]float32, 4)}, "student_id is empty"},
		{StateRow{StudentID: "a", Events: -1, State: make([]float32, 4)}, "events is -1"},
	} {
		if err := w.Write(c.row); !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Write(%+v) = %v, want ErrBadRow saying %q", c.row, err, c.want)
		}
	}
	if _, err := CreateStateFile(filepath.Join(t.TempDir(), "s.parquet"), cfg, 0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("state size 0 = %v, want ErrInvalidConfig", err)
	}
}

// Files not written by dktscore (pyarrow here) are read when their columns fit
// and refused, naming the row or column, when they do not.
func TestStateReaderNamesWhatIsWrongInForeignFiles(t *testing.T) {
	python, _ := filepath.Abs("../../.venv/bin/python")
	dir := t.TempDir()
	const script = `
import sys, pyarrow as pa, pyarrow.parquet as pq
d = sys.argv[1]
st = pa.list_(pa.float32())
def write(name, ids, states, events=pa.int64(), extra=None):
    cols = {"student_id": pa.array(ids), "model_version": pa.array(["dkt/1"] * len(ids)),
            "events": pa.array([3] * len(ids), events), "state": pa.array(states, st)}
    pq.write_table(pa.table(cols), f"{d}/{name}.parquet")
write("good", ["a", "b"], [[0.5, 1.0], [0.25, -1.0]])
write("empty_state", ["a", "b"], [[0.5, 1.0], []])
write("nan", ["a", "b"], [[0.5, 1.0], [float("nan"), 0.0]])
write("null_id", ["a", None], [[0.5, 1.0], [0.5, 1.0]])
write("int32_events", ["a"], [[0.5]], events=pa.int32())
pq.write_table(pa.table({"student_id": ["a"]}), f"{d}/no_state.parquet")`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, python, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("pyarrow: %v\n%s", err, out)
	}
	if rows := readAllStates(t, filepath.Join(dir, "good.parquet")); len(rows) != 2 || rows[1].State[1] != -1 {
		t.Fatalf("good file read as %+v", rows)
	}
	for _, c := range []struct{ file, want string }{
		{"empty_state", "row 1: student \"b\": the state is empty"},
		{"nan", "row 1: student \"b\": state[0] is null or not finite"},
		{"null_id", "row 1: a null value"},
		{"int32_events", "column \"events\" is int32, want int64"},
		{"no_state", "no column \"state\""},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(dir, c.file+".parquet")
			r, err := OpenStateFile(ctx, path)
			if err == nil {
				defer r.Close()
				for err == nil {
					_, err = r.Next()
				}
			}
			if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: %v, want an error saying %q", c.file, err, c.want)
			}
		})
	}
}
