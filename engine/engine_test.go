package engine

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dktscore/dktscore/io/records"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/worker"
)

const (
	bundledModel = "../models/dkt"
	testSplit    = "../data/assistments/builder_test.csv"
)

// readStudents reads the test split with the records reader score uses; any
// reject fails the test, since the split is clean.
func readStudents(t *testing.T) []batching.Item {
	t.Helper()
	r, err := records.Open(testSplit, records.FormatDKT3, records.Options{NumSkills: 124})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var items []batching.Item
	for {
		seq, err := r.Next()
		if errors.Is(err, io.EOF) {
			return items
		}
		if err != nil {
			t.Fatalf("%s: %v", testSplit, err)
		}
		items = append(items, batching.Item{Skills: seq.Skills, Correct: seq.Correct})
	}
}

// The chunk path (blocks of carried state) gives what one predict_ids call
// per batch gives, for every output a job may ask for, on real students
// including the split's longest (8,214 steps), for several block shapes.
func TestChunkPathEqualsPredictIDs(t *testing.T) {
	all := readStudents(t)
	byLength := slices.Clone(all)
	slices.SortStableFunc(byLength, func(a, b batching.Item) int { return len(a.Skills) - len(b.Skills) })
	items := append(slices.Clone(all[:40]), byLength[len(byLength)-2:]...)
	if n := len(items[len(items)-1].Skills); n != 8214 {
		t.Fatalf("longest student has %d steps, want 8,214", n)
	}
	chunked, err := model.Load(model.Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer chunked.Close()
	plain, err := model.Load(model.Config{Path: bundledModel, Sessions: 1, Signature: model.IDsSignature})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !chunked.ScoresInChunks() || plain.ScoresInChunks() {
		t.Fatalf("ScoresInChunks: %v by default, %v with --signature predict_ids; want true, false", chunked.ScoresInChunks(), plain.ScoresInChunks())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := chunked.NumSkills
	real := 0
	for _, it := range items {
		real += len(it.Skills)
	}
	score := func(m *model.Model, b *batching.Batch, trajectory, next bool) worker.EngineOutputs {
		out := worker.EngineOutputs{Last: make([]float32, len(b.Items)*s)}
		if trajectory {
			out.Steps = make([]float32, real*s)
		}
		if next {
			out.Next = make([]float32, real)
		}
		if _, err := Of(model.FixedVersion(m)).Predict(ctx, b, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	batch, err := batching.PadToLongest(s, items)
	if err != nil {
		t.Fatal(err)
	}
	want := score(plain, batch, true, true)
	for _, shape := range []struct{ rows, chunk int }{{64, 64}, {4, 7}, {16, 128}} {
		for _, outputs := range []struct{ trajectory, next bool }{{true, true}, {false, true}, {false, false}} {
			batch.BlockRows, batch.ChunkSteps = shape.rows, shape.chunk
			got := score(chunked, batch, outputs.trajectory, outputs.next)
			batch.BlockRows, batch.ChunkSteps = 0, 0
			name := func(what string) string {
				return strconv.Itoa(shape.rows) + "×" + strconv.Itoa(shape.chunk) + " blocks: " + what
			}
			assertClose(t, name("last"), got.Last, want.Last)
			if outputs.trajectory {
				assertClose(t, name("trajectory"), got.Steps, want.Steps)
			}
			if outputs.next {
				// A history's last step has no next answer: its value is unspecified.
				row := 0
				for _, it := range items {
					n := len(it.Skills)
					assertClose(t, name("next"), got.Next[row:row+n-1], want.Next[row:row+n-1])
					row += n
				}
			}
		}
	}
}

func assertClose(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s: value %d is %v, predict_ids gives %v", what, i, got[i], want[i])
		}
	}
}
