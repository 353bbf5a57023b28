package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/model"
)

const (
	testModel = "../../models/dkt"
	testSplit = "../../data/assistments/builder_test.csv"
)

// dkt3Student is one student of a DKT 3-line CSV, parsed here on its own so
// the test does not share a reader bug with the command.
type dkt3Student struct{ skills, correct []string }

func readDKT3Students(t *testing.T, path string) []dkt3Student {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if l := strings.Trim(strings.TrimSpace(sc.Text()), ","); l != "" {
			lines = append(lines, l)
		}
	}
	var out []dkt3Student
	for i := 0; i+2 < len(lines); i += 3 {
		out = append(out, dkt3Student{strings.Split(lines[i+1], ","), strings.Split(lines[i+2], ",")})
	}
	return out
}

func writeDKT3(t *testing.T, path string, students []dkt3Student) {
	t.Helper()
	var b strings.Builder
	for _, s := range students {
		fmt.Fprintf(&b, "%d\n%s\n%s\n", len(s.skills), strings.Join(s.skills, ","), strings.Join(s.correct, ","))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runCommand(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("dktscore %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}

// trajectoryRows reads a trajectory file into student_id → step → mastery.
func trajectoryRows(t *testing.T, path string) map[string]map[int32][]float32 {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	reader := array.NewTableReader(tbl, 1<<16)
	defer reader.Release()
	out := map[string]map[int32][]float32{}
	for reader.Next() {
		rec := reader.RecordBatch()
		ids := rec.Column(0).(*array.String)
		steps := rec.Column(1).(*array.Int32)
		mastery := rec.Column(4).(*array.FixedSizeList)
		values := mastery.ListValues().(*array.Float32).Float32Values()
		width := len(values) / int(rec.NumRows())
		for i := range int(rec.NumRows()) {
			if out[ids.Value(i)] == nil {
				out[ids.Value(i)] = map[int32][]float32{}
			}
			out[ids.Value(i)][steps.Value(i)] = values[i*width : (i+1)*width]
		}
	}
	return out
}

// Emitted states are the students' true LSTM states: one Step from the state
// emitted for a history without its last interaction, on that interaction,
// gives the mastery `score --trajectory` reports for it over the full history.
func TestEmitStateContinuesEveryHistoryExactlyAsScore(t *testing.T) {
	all := readDKT3Students(t, testSplit)
	// The first 40 students with two or more interactions (a history minus its
	// last interaction must not be empty) and the two longest (6,577 and 8,214).
	var picked []dkt3Student
	for _, s := range all {
		if len(s.skills) >= 2 && len(picked) < 40 {
			picked = append(picked, s)
		}
	}
	byLength := slices.Clone(all)
	slices.SortFunc(byLength, func(a, b dkt3Student) int { return len(a.skills) - len(b.skills) })
	picked = append(picked, byLength[len(byLength)-2:]...)
	prefixes := make([]dkt3Student, len(picked))
	for i, s := range picked {
		prefixes[i] = dkt3Student{s.skills[:len(s.skills)-1], s.correct[:len(s.correct)-1]}
	}
	dir := t.TempDir()
	full, prefix := filepath.Join(dir, "full.csv"), filepath.Join(dir, "prefix.csv")
	writeDKT3(t, full, picked)
	writeDKT3(t, prefix, prefixes)

	statesPath := filepath.Join(dir, "states.parquet")
	out := runCommand(t, "score", "--model", testModel, "--input", prefix, "--output", filepath.Join(dir, "prefix.parquet"),
		"--emit-state", statesPath, "--quiet")
	if !strings.Contains(out, fmt.Sprintf("states=%d ", len(picked))) {
		t.Fatalf("summary does not report %d states:\n%s", len(picked), out)
	}
	runCommand(t, "score", "--model", testModel, "--input", full, "--output", filepath.Join(dir, "full.parquet"), "--trajectory", "--quiet")
	trajectory := trajectoryRows(t, filepath.Join(dir, "full.trajectory.parquet"))

	m, err := model.Load(model.Config{Path: testModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	states, err := columnar.OpenStateFile(context.Background(), statesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer states.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seen, worst := map[string]bool{}, 0.0
	for {
		row, err := states.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ordinal, _ := strconv.Atoi(row.StudentID) // DKT 3-line ids are record ordinals
		s := picked[ordinal]
		n := len(s.skills)
		if seen[row.StudentID] || row.Events != int64(n-1) || row.ModelVersion != "dkt/1" || len(row.State) != m.StateSize() {
			t.Fatalf("state row %s: events %d (history %d), version %q, %d values (repeated: %v)",
				row.StudentID, row.Events, n-1, row.ModelVersion, len(row.State), seen[row.StudentID])
		}
		seen[row.StudentID] = true
		skill, _ := strconv.Atoi(s.skills[n-1])
		correct, _ := strconv.Atoi(s.correct[n-1])
		mastery := make([]float32, m.NumSkills)
		if err := m.Step(ctx, model.StepInputs{SkillID: []int32{int32(skill)}, Correct: []int32{int32(correct)}, State: row.State},
			model.StepOutputs{State: make([]float32, m.StateSize()), Mastery: mastery}); err != nil {
			t.Fatal(err)
		}
		want := trajectory[row.StudentID][int32(n-1)]
		if len(want) != m.NumSkills {
			t.Fatalf("student %s: trajectory has no step %d", row.StudentID, n-1)
		}
		for k := range mastery {
			d := math.Abs(float64(mastery[k] - want[k]))
			worst = max(worst, d)
			if d > 1e-5 {
				t.Fatalf("student %s (history %d): Step from the emitted state gives mastery[%d] = %v, score's trajectory %v (|diff| %g)",
					row.StudentID, n, k, mastery[k], want[k], d)
			}
		}
	}
	if len(seen) != len(picked) {
		t.Fatalf("%d state rows for %d students", len(seen), len(picked))
	}
	t.Logf("%d students (longest %d): Step from the emitted state matches score's trajectory, worst |diff| %.2g", len(seen), len(picked[len(picked)-1].skills), worst)
}

func TestEmitStateRefusesAWindowedHistory(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"score", "--model", testModel, "--input", testSplit, "--output", filepath.Join(dir, "o.parquet"),
		"--emit-state", filepath.Join(dir, "s.parquet"), "--max-steps", "50", "--quiet"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "drop --max-steps") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and advice to drop --max-steps", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "o.parquet")); !os.IsNotExist(err) {
		t.Fatalf("the refused run still wrote its output (%v)", err)
	}
}
