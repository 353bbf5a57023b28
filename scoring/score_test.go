package scoring

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

const testModel = "../models/dkt"

// options resolves score's flags from args, as the command does.
func options(t *testing.T, args ...string) Options {
	t.Helper()
	var o Options
	if _, err := Settings(&o, "score").Resolve(append(args, "--model", testModel, "--quiet"), nil); err != nil {
		t.Fatal(err)
	}
	return o
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFailedRunKeepsPreviousOutputs: a run that fails (here: interrupted
// before it read anything) leaves the previous run's mastery and rejects files
// as they were, and no temporary file behind; a run that succeeds replaces
// both.
func TestFailedRunKeepsPreviousOutputs(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeFile(t, input, `{"student_id": "good", "skills": [1, 2], "correct": [0, 1]}`+"\n"+
		`{"student_id": "bad", "skills": [1, 2], "correct": [0, 7]}`+"\n")
	out := filepath.Join(dir, "o.parquet")
	rejects := out + ".rejects.jsonl"
	writeFile(t, out, "previous mastery")
	writeFile(t, rejects, "previous rejects\n")
	o := options(t, "--input", input, "--output", out)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	if err := Run(ctx, o, &stdout, &stderr); err == nil {
		t.Fatal("an interrupted run succeeded")
	}
	if got := readFile(t, out); got != "previous mastery" {
		t.Errorf("failed run replaced the mastery file: %q", got)
	}
	if got := readFile(t, rejects); got != "previous rejects\n" {
		t.Errorf("failed run replaced the rejects file: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".partial") {
			t.Errorf("failed run left %s behind", e.Name())
		}
	}

	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !strings.HasPrefix(got, "PAR1") {
		t.Errorf("successful run did not replace the mastery file: %q", got[:min(len(got), 20)])
	}
	if got := readFile(t, rejects); !strings.Contains(got, `"student_id":"bad"`) || strings.Contains(got, "previous") {
		t.Errorf("successful run did not replace the rejects file: %q", got)
	}
	if st, err := os.Stat(rejects); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("rejects file mode: %v %v", st, err)
	}
}

// TestCommitIsAllOrNothing: when moving a run's finished files into place
// fails partway (here the third destination became a directory), the files
// already moved are put back: the previous run's set is whole, and no
// temporary file is left.
func TestCommitIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "o.parquet"), filepath.Join(dir, "o.trajectory.parquet"), filepath.Join(dir, "o.parquet.rejects.jsonl")}
	writeFile(t, paths[0], "old mastery")
	writeFile(t, paths[1], "old trajectory")
	var outs stagedOutputs
	for i, p := range paths {
		tmp, err := outs.stage(p, "file "+p)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, tmp, fmt.Sprintf("new %d", i))
	}
	// Between staging and commit the rejects path turns into a directory.
	if err := os.MkdirAll(filepath.Join(paths[2], "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := outs.commit()
	if err == nil || !strings.Contains(err.Error(), "no output was replaced") || !strings.Contains(err.Error(), paths[2]) {
		t.Fatalf("commit: %v", err)
	}
	if got := readFile(t, paths[0]); got != "old mastery" {
		t.Errorf("mastery after a failed commit: %q", got)
	}
	if got := readFile(t, paths[1]); got != "old trajectory" {
		t.Errorf("trajectory after a failed commit: %q", got)
	}
	noPartials(t, dir)

	// Without the obstacle, a commit replaces all of them.
	os.RemoveAll(paths[2])
	var again stagedOutputs
	for i, p := range paths {
		tmp, err := again.stage(p, p)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, tmp, fmt.Sprintf("new %d", i))
	}
	if err := again.commit(); err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if got := readFile(t, p); got != fmt.Sprintf("new %d", i) {
			t.Errorf("%s = %q", p, got)
		}
	}
	noPartials(t, dir)
}

func noPartials(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}

// corruptParquet writes 30 students of 100 rows in 3 row groups of 1000
// rows, snappy-compressed, and overwrites the end of row group 1's skill_id
// chunk, which lies in its last data page.
func corruptParquet(t *testing.T, path string) {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "student_id", Type: arrow.BinaryTypes.String},
		{Name: "skill_id", Type: arrow.PrimitiveTypes.Int32},
		{Name: "correct", Type: arrow.PrimitiveTypes.Int8},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for s := 0; s < 30; s++ {
		for k := 0; k < 100; k++ {
			b.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("s%02d", s))
			b.Field(1).(*array.Int32Builder).Append(int32(k % 100))
			b.Field(2).(*array.Int8Builder).Append(int8(k % 2))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(1000), parquet.WithCompression(compress.Codecs.Snappy)), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := pf.MetaData().RowGroup(1).ColumnChunk(1)
	if err != nil {
		t.Fatal(err)
	}
	start := cc.DataPageOffset()
	if d := cc.DictionaryPageOffset(); d > 0 && d < start {
		start = d
	}
	end := start + cc.TotalCompressedSize()
	for i := end - 24; i < end; i++ {
		data[i] ^= 0xA5
	}
	writeFile(t, path, string(data))
}

// TestMidInputReadErrorKeepsScored: a damaged page in a middle row group
// ends the run with an error naming the row group and its rows, but the
// students scored before it are written, the summary counts them, and the
// previous run's rejects file is replaced together with the mastery file.
func TestMidInputReadErrorKeepsScored(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.parquet")
	corruptParquet(t, input)
	out := filepath.Join(dir, "o.parquet")
	rejects := out + ".rejects.jsonl"
	writeFile(t, out, "previous mastery")
	writeFile(t, rejects, "previous rejects\n")
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), options(t, "--input", input, "--output", out), &stdout, &stderr)
	if err == nil {
		t.Fatal("a damaged input ended without an error")
	}
	for _, w := range []string{input, "row group 1 of 3 (rows 1001-2000)", "rows 1-1000 before it were read", "the 9 students scored and 0 rejects before that point are written to " + out} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if !strings.Contains(stdout.String(), "students=9 ") {
		t.Errorf("summary does not count the scored students: %s", stdout.String())
	}
	f, err := file.OpenParquetFile(out, false)
	if err != nil {
		t.Fatalf("mastery file: %v", err)
	}
	defer f.Close()
	if n := f.NumRows(); n != 9 {
		t.Errorf("mastery file has %d rows, want 9", n)
	}
	if got := readFile(t, rejects); got != "" {
		t.Errorf("rejects file is not this run's (empty): %q", got)
	}
	noPartials(t, dir)
}
