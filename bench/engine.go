package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/engine"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/scoring"
	"github.com/dktscore/dktscore/worker"
)

// DefaultInput is the ASSISTments test split the benchmarks score.
const DefaultInput = "data/assistments/builder_test.csv"

// engineRow is one measured row of `dktscore bench`, printed as one JSON line
// with --json (bench/run.py reads these) or as a line of text.
type engineRow struct {
	Row          string    `json:"row"` // "a" (engine ceiling), "o" (row a on the origin signature), "f" (naive batching), "k" (chunk path), "p" (full-block peak)
	Name         string    `json:"name"`
	Signature    string    `json:"signature"` // the signature model.Predict ran
	Sequences    int       `json:"sequences"`
	Interactions int       `json:"interactions"`
	Computed     int       `json:"computed_steps"`
	Batches      int       `json:"batches"`
	Runs         []float64 `json:"runs_s"`
	CPURuns      []float64 `json:"cpu_runs_s"` // CPU time (user+system, every thread) of each timed pass
	Median       float64   `json:"median_s"`
	SeqPerSec    float64   `json:"sequences_per_s"`
	IntPerSec    float64   `json:"interactions_per_s"`
	Padding      float64   `json:"padding_efficiency"`
	// PeakRSSKiB is VmHWM of this process after the row: with several rows in
	// one process it includes every earlier row's peak (bench/run.py runs
	// one process per row for that reason).
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	Sessions   int   `json:"sessions"`
	Threads    int   `json:"threads"`
	// BlockRows and ChunkSteps are the block shape of rows k and p.
	BlockRows  int `json:"block_rows,omitempty"`
	ChunkSteps int `json:"chunk_steps,omitempty"`
}

// Engine measures the engine alone, with no I/O or decoding in the timed
// part: every batch is built first, then only model.Predict over them is
// timed, with as many goroutines as sessions (as `score` runs them). Row a
// builds the batches with the batching.Assembler and the same policy as
// `score`; row o runs row a's batches on the origin "predict" signature (the
// model builds the one-hot input_x), so that the gain of the compact
// predict_ids is measured; row f uses naive batching, batch-size sequences in
// file order padded to the longest. Row k runs the batches `score` forms on
// the chunk path (batch-size rows × chunkSteps blocks of carried state,
// through package engine, fetching what score fetches); row p is the chunk
// path's peak: only full [batch-size, chunkSteps] blocks of random ids, as
// many interactions as the input has, on every session.
func Engine(f scoring.Options, rows []string, chunkSteps, runs, warmup int, asJSON bool, stdout io.Writer) error {
	m, err := scoring.LoadModel(f)
	if err != nil {
		return err
	}
	defer m.Close()
	threads := gpu.ThreadsPerSession(f.Threads, f.Sessions) // as scoring.LoadModel chose, for the report

	seqs, err := ReadAll(f, m.NumSkills)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		return fmt.Errorf("%s: no valid sequences", f.Input)
	}
	for _, row := range rows {
		var batches []*batching.Batch
		name, rowModel := "", m
		switch row {
		case "a":
			name = "engine ceiling (length buckets)"
			batches, err = bucketedBatches(f, m.NumSkills, seqs)
		case "o":
			name = "engine ceiling, origin signature"
			origin := f
			origin.Signature = model.OriginSignature
			if rowModel, err = scoring.LoadModel(origin); err != nil {
				return err
			}
			batches, err = bucketedBatches(f, m.NumSkills, seqs)
		case "f":
			name = "naive batching (file order, pad to longest)"
			batches, err = naiveBatches(f.BatchSize, m.NumSkills, seqs)
		case "k", "p":
			if !m.ScoresInChunks() {
				return fmt.Errorf("row %s needs the chunk path: a model with the chunk signature (python -m dkt.upgrade --model DIR) and no --signature", row)
			}
			name = "engine, chunk path (blocks of carried state)"
			chunked := f.Batching.Config(m.NumSkills)
			chunked.ChunkSteps = chunkSteps
			batches, err = assembled(chunked, seqs)
			if row == "p" {
				name = "engine peak (full random blocks)"
				batches = fullBlocks(f.BatchSize, chunkSteps, m.NumSkills, batches)
			}
		}
		if err != nil {
			if rowModel != m {
				rowModel.Close()
			}
			return err
		}
		res := engineRow{Row: row, Name: name, Signature: rowModel.Signature, Sessions: f.Sessions, Threads: threads}
		if row == "k" || row == "p" {
			res.Signature, res.BlockRows, res.ChunkSteps = model.ChunkSignature, f.BatchSize, chunkSteps
		}
		err = measure(rowModel, f.Sessions, batches, runs, warmup, &res)
		for _, b := range batches {
			b.Release()
		}
		if rowModel != m {
			err = errors.Join(err, rowModel.Close())
		}
		if err != nil {
			return err
		}
		if asJSON {
			line, _ := json.Marshal(res)
			fmt.Fprintf(stdout, "%s\n", line)
		} else {
			fmt.Fprintf(stdout, "%s %-44s %-11s %4d batches  median %.3fs of %d  %8.1f sequences/s  %9.0f interactions/s  padding %.4f  VmHWM %d MiB\n",
				res.Row, res.Name, res.Signature, res.Batches, res.Median, runs, res.SeqPerSec, res.IntPerSec, res.Padding, res.PeakRSSKiB/1024)
		}
	}
	return nil
}

// measure times warmup untimed and runs timed passes of m over batches and
// fills the rest of res.
func measure(m *model.Model, sessions int, batches []*batching.Batch, runs, warmup int, res *engineRow) error {
	res.Batches = len(batches)
	for _, b := range batches {
		res.Sequences += b.Size()
		res.Interactions += b.RealSteps()
		res.Computed += b.ComputedSteps()
	}
	outs := make([]model.Outputs, len(batches))
	for i, b := range batches {
		outs[i] = model.Outputs{Last: make([]float32, b.Size()*m.NumSkills), Next: make([]float32, b.RealSteps())}
	}
	for range warmup {
		if _, err := predictAll(m, sessions, batches, outs); err != nil {
			return err
		}
	}
	for range runs {
		cpu := cpuSeconds()
		secs, err := predictAll(m, sessions, batches, outs)
		if err != nil {
			return err
		}
		res.Runs = append(res.Runs, secs)
		res.CPURuns = append(res.CPURuns, cpuSeconds()-cpu)
	}
	res.Median = Median(res.Runs)
	res.SeqPerSec = float64(res.Sequences) / res.Median
	res.IntPerSec = float64(res.Interactions) / res.Median
	res.Padding = float64(res.Interactions) / float64(res.Computed)
	res.PeakRSSKiB = PeakRSSKiB()
	return nil
}

// ReadAll decodes every valid sequence of the input; rejects are skipped (score
// writes them to its rejects file and scores the rest).
func ReadAll(f scoring.Options, numSkills int) ([]records.Sequence, error) {
	in, err := scoring.OpenInput(f.Input, f.InputFormat, numSkills)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var seqs []records.Sequence
	for {
		s, err := in.Next()
		var reject *records.RejectError
		switch {
		case errors.Is(err, io.EOF):
			return seqs, nil
		case errors.As(err, &reject):
			continue
		case err != nil:
			return nil, err
		}
		if f.MaxSteps > 0 && s.Len() > f.MaxSteps {
			s.Skills, s.Correct = s.Skills[s.Len()-f.MaxSteps:], s.Correct[s.Len()-f.MaxSteps:]
		}
		seqs = append(seqs, s)
	}
}

// bucketedBatches files every sequence through an Assembler with score's policy
// and drains it. The clock never advances, so no batch is flushed by delay:
// these are the batches score makes when input arrives faster than MaxDelay.
func bucketedBatches(f scoring.Options, numSkills int, seqs []records.Sequence) ([]*batching.Batch, error) {
	return assembled(f.Batching.Config(numSkills), seqs)
}

func assembled(cfg batching.Config, seqs []records.Sequence) ([]*batching.Batch, error) {
	asm, err := batching.NewAssembler(cfg)
	if err != nil {
		return nil, err
	}
	var now time.Time
	var out []*batching.Batch
	for _, s := range seqs {
		bs, err := asm.Add(batching.Item{Skills: s.Skills, Correct: s.Correct}, now)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	return append(out, asm.Drain()...), nil
}

// naiveBatches groups size sequences at a time in file order and pads each
// group to its longest sequence, with the same tensor layout as package batching.
func naiveBatches(size, numSkills int, seqs []records.Sequence) ([]*batching.Batch, error) {
	var out []*batching.Batch
	for chunk := range slices.Chunk(seqs, size) {
		items := make([]batching.Item, len(chunk))
		for i, s := range chunk {
			items[i] = batching.Item{Skills: s.Skills, Correct: s.Correct}
		}
		b, err := batching.PadToLongest(numSkills, items)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// predictAll runs every batch once, spread over sessions goroutines, and returns
// the wall time in seconds.
func predictAll(m *model.Model, sessions int, batches []*batching.Batch, outs []model.Outputs) (float64, error) {
	ctx := context.Background()
	next := make(chan int, len(batches))
	for i := range batches {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	errs := make([]error, sessions)
	start := time.Now()
	chunks := engine.Of(model.FixedVersion(m))
	for w := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b := batches[i]
				var err error
				if b.ChunkSteps > 0 {
					_, err = chunks.Predict(ctx, b, worker.EngineOutputs{Last: outs[i].Last, Next: outs[i].Next})
				} else {
					in := model.Inputs{Size: b.Size(), Steps: b.Steps, SkillID: b.SkillID, Correct: b.Correct, TargetID: b.TargetID, SeqLen: b.SeqLen}
					err = m.Predict(ctx, in, outs[i])
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start).Seconds(), errors.Join(errs...)
}

// fullBlocks replaces batches by batches of rows sequences of exactly chunk
// steps each, random ids, with about as many interactions as batches hold:
// every block the chunk path runs on them is a full [rows, chunk] one.
func fullBlocks(rows, chunk, numSkills int, batches []*batching.Batch) []*batching.Batch {
	interactions := 0
	for _, b := range batches {
		interactions += b.RealSteps()
		b.Release()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var out []*batching.Batch
	for done := 0; done < interactions; done += rows * chunk {
		items := make([]batching.Item, rows)
		for i := range items {
			it := batching.Item{Skills: make([]int32, chunk), Correct: make([]int8, chunk)}
			for t := range chunk {
				it.Skills[t], it.Correct[t] = int32(rng.IntN(numSkills)), int8(rng.IntN(2))
			}
			items[i] = it
		}
		b, _ := batching.PadToLongest(numSkills, items) // valid by construction
		b.ChunkSteps, b.BlockRows = chunk, rows
		out = append(out, b)
	}
	return out
}

// Median is the middle of v (the mean of the two middle values for an even count).
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuSeconds is the CPU time this process has used so far, TensorFlow's
// threads included. On a shared machine it is steadier than wall time: other
// processes delay a pass, but barely change the work it takes.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// PeakRSSKiB is the process's peak resident set (VmHWM), or -1 where
// /proc/self/status is unavailable.
func PeakRSSKiB() int64 {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kib
			}
		}
	}
	return -1
}
