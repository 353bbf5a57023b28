package columnar

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// expectedOutput is one entry of the JSON that testdata/check_outputs.py
// compares the files against.
type expectedOutput struct {
	Path       string           `json:"path"`
	Container  string           `json:"container"` // parquet, arrow_file, arrow_stream
	Schema     string           `json:"schema"`    // mastery, trajectory
	WithSource bool             `json:"with_source"`
	Batches    int              `json:"batches"`
	Rows       []map[string]any `json:"rows"`
}

// float64s widens exactly, so Python compares the very float32 values Go wrote.
func float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func expectedMasteryRows(cfg Config, rows []MasteryRow, scoredAt func(i int) time.Time) []map[string]any {
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		m := map[string]any{
			ColStudentID: r.StudentID, ColSeqLen: r.SeqLen, ColMastery: float64s(r.Mastery),
			ColWindowStart: r.WindowStart, ColModelVersion: cfg.ModelVersion, ColScoredAt: scoredAt(i).UnixMicro(),
		}
		if cfg.WithSource {
			m[ColSourceTopic], m[ColSourcePartition], m[ColSourceOffset] = r.SourceTopic, r.SourcePartition, r.SourceOffset
		}
		out[i] = m
	}
	return out
}

func expectedStepRows(cfg Config, rows []StepRow) []map[string]any {
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		out[i] = map[string]any{
			ColStudentID: r.StudentID, ColStep: r.Step, ColSkillID: r.SkillID, ColCorrect: r.Correct,
			ColMastery: float64s(r.Mastery), ColModelVersion: cfg.ModelVersion,
		}
	}
	return out
}

// TestRealConsumers has pyarrow and DuckDB read every output kind and compare
// it value by value with what was written.
func TestRealConsumers(t *testing.T) {
	python, err := filepath.Abs("../../.venv/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("no project Python at %s (%v): run `make setup` first", python, err)
	}
	dir := t.TempDir()
	var outputs []expectedOutput
	var cfg Config

	for _, format := range []Format{FormatParquet, FormatArrow} {
		container := map[Format]string{FormatParquet: "parquet", FormatArrow: "arrow_file"}[format]
		for _, withSource := range []bool{false, true} {
			cfg, _ = testConfig(t, format, withSource)
			rows := makeMasteryRows(10, cfg.NumSkills)
			path := filepath.Join(dir, "mastery-"+map[bool]string{false: "plain", true: "source"}[withSource]+format.Ext())
			w, err := CreateMasteryFile(path, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rows...); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			outputs = append(outputs, expectedOutput{
				Path: path, Container: container, Schema: "mastery", WithSource: withSource, Batches: 4,
				Rows: expectedMasteryRows(cfg, rows, func(i int) time.Time { return expectedScoredAt(i, cfg.RowsPerBatch) }),
			})
		}

		cfg, _ = testConfig(t, format, false)
		steps := makeStepRows(2, 4, cfg.NumSkills)
		path := filepath.Join(dir, "trajectory"+format.Ext())
		tw, err := CreateTrajectoryFile(path, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.Write(steps...); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, expectedOutput{
			Path: path, Container: container, Schema: "trajectory", Batches: 3, Rows: expectedStepRows(cfg, steps),
		})
	}

	cfg, _ = testConfig(t, "", true)
	rows := makeMasteryRows(6, cfg.NumSkills)
	data, err := EncodeIPCStream(cfg, rows, clockStart)
	if err != nil {
		t.Fatal(err)
	}
	streamPath := filepath.Join(dir, "message.arrows")
	if err := os.WriteFile(streamPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, expectedOutput{
		Path: streamPath, Container: "arrow_stream", Schema: "mastery", WithSource: true, Batches: 1,
		Rows: expectedMasteryRows(cfg, rows, func(int) time.Time { return clockStart }),
	})

	expected, err := json.MarshalIndent(map[string]any{
		"num_skills": cfg.NumSkills, "model_version": cfg.ModelVersion, "outputs": outputs,
	}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	expectedPath := filepath.Join(dir, "expected.json")
	if err := os.WriteFile(expectedPath, expected, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "testdata/check_outputs.py", expectedPath).CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("check_outputs.py did not finish in 2 minutes:\n%s", out)
	}
	if err != nil {
		t.Fatalf("pyarrow/DuckDB disagree with what was written (%v):\n%s", err, out)
	}
	t.Logf("%s", out)
}
