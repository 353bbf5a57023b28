package batching

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testSplit     = "../data/assistments/builder_test.csv"
	realNumSkills = 124 // skill ids 0..123, see the split's README
)

// readDKT3 parses the DKT 3-line format (n; n skill ids; n 0/1 flags; each
// list with a trailing comma). It is deliberately minimal: the real decoder
// lives in io/records, which this package must not import.
func readDKT3(tb testing.TB, path string) []Item {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("open the real split: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	var lines []string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(lines)%3 != 0 {
		tb.Fatalf("%s: %d non-empty lines, not a multiple of 3", path, len(lines))
	}
	fields := func(line string) []string { return strings.Split(strings.TrimSuffix(line, ","), ",") }
	var items []Item
	for i := 0; i < len(lines); i += 3 {
		n, err := strconv.Atoi(lines[i])
		skills, flags := fields(lines[i+1]), fields(lines[i+2])
		if err != nil || len(skills) != n || len(flags) != n {
			tb.Fatalf("%s: student at line %d: bad counts (n=%q, %d skills, %d flags)", path, i+1, lines[i], len(skills), len(flags))
		}
		it := Item{Skills: make([]int32, n), Correct: make([]int8, n), Ref: len(items)}
		for t := range n {
			s, err1 := strconv.Atoi(skills[t])
			c, err2 := strconv.Atoi(flags[t])
			if err1 != nil || err2 != nil {
				tb.Fatalf("%s: student at line %d, step %d: %v %v", path, i+1, t, err1, err2)
			}
			it.Skills[t], it.Correct[t] = int32(s), int8(c)
		}
		items = append(items, it)
	}
	return items
}

func realConfig() Config {
	return Config{NumSkills: realNumSkills, MaxBatchSize: 32, MaxDelay: time.Second, MaxPaddedSteps: 32 * 512}
}

// assembleAll feeds students in file order at one instant (no delay flushes)
// and drains.
func assembleAll(tb testing.TB, a *Assembler, items []Item) []*Batch {
	var out []*Batch
	for _, it := range items {
		bs, err := a.Add(it, t0)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, bs...)
	}
	return append(out, a.Drain()...)
}

func TestRealSplitPaddingRatio(t *testing.T) {
	items := readDKT3(t, testSplit)
	cfg := realConfig()
	a := mustAssembler(t, cfg)
	batches := assembleAll(t, a, items)

	seen := make([]int, len(items))
	real, computed := 0, 0
	for _, b := range batches {
		for r, it := range b.Items {
			ref := it.Ref.(int)
			seen[ref]++
			if int(b.SeqLen[r]) != len(items[ref].Skills) {
				t.Fatalf("student %d: SeqLen %d, want %d", ref, b.SeqLen[r], len(items[ref].Skills))
			}
		}
		if b.Size() > 1 && b.ComputedSteps() > cfg.MaxPaddedSteps {
			t.Errorf("batch of %d × %d steps exceeds the budget %d", b.Size(), b.Steps, cfg.MaxPaddedSteps)
		}
		real += b.RealSteps()
		computed += b.ComputedSteps()
	}
	for ref, n := range seen {
		if n != 1 {
			t.Fatalf("student %d appears in %d batches", ref, n)
		}
	}
	// Check every tensor element of a handful of batches against the contract.
	for _, i := range []int{0, len(batches) / 2, len(batches) - 1} {
		checkContract(t, batches[i], realNumSkills)
	}
	for _, b := range batches {
		b.Release()
	}

	ratio := float64(computed) / float64(real)
	if limit := cfg.growth(); ratio > limit {
		t.Errorf("computed/real = %.4f, want ≤ %v", ratio, limit)
	}
	if s := a.Stats(); s.RealSteps != uint64(real) || s.ComputedSteps != uint64(computed) {
		t.Errorf("Stats steps %d/%d, counted %d/%d", s.RealSteps, s.ComputedSteps, real, computed)
	}

	// What batching 32 students in file order, padded to the longest, costs.
	randomComputed := 0
	for i := 0; i < len(items); i += 32 {
		chunk := items[i:min(i+32, len(items))]
		longest := 0
		for _, it := range chunk {
			longest = max(longest, len(it.Skills))
		}
		randomComputed += len(chunk) * longest
	}
	s := a.Stats()
	t.Logf("%d students, %d real steps: bucketed computed/real = %.4f in %d batches (size %d, bucket %d, drain %d); "+
		"file-order batches of 32 = %.2f in %d batches",
		len(items), real, ratio, len(batches), s.Flushes[FlushSize], s.Flushes[FlushBucket], s.Flushes[FlushDrain],
		float64(randomComputed)/float64(real), (len(items)+31)/32)
}

// BenchmarkAssemble measures building every batch of the real test split,
// tensors included, with buffers released as soon as a batch is built (as a
// worker does once the model has run).
//
// "stream" models a live feed: students arrive 1ms apart and buckets expire
// after 10ms, so batches come out a few at a time and buffers are recycled.
// "drain" files everything first and drains at once (a shutdown, or a file
// scored in one go): ~100 batches are alive together, more than the pool
// keeps, so most buffers are fresh allocations.
func BenchmarkAssemble(b *testing.B) {
	items := readDKT3(b, testSplit)
	real := 0
	for _, it := range items {
		real += len(it.Skills)
	}
	release := func(bs []*Batch) {
		for _, bt := range bs {
			bt.Release()
		}
	}
	for _, bc := range []struct {
		name   string
		growth float64
		stream bool
	}{
		{"stream/growth=1.05", 1.05, true},
		{"stream/growth=1.2", 1.2, true},
		{"drain/growth=1.05", 1.05, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := realConfig()
			cfg.BucketGrowth = bc.growth
			cfg.MaxDelay = 10 * time.Millisecond
			a := mustAssembler(b, cfg)
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				for _, it := range items {
					if bc.stream {
						now = now.Add(time.Millisecond)
						release(a.Expired(now))
					}
					bs, err := a.Add(it, now)
					if err != nil {
						b.Fatal(err)
					}
					release(bs)
				}
				release(a.Drain())
			}
			b.ReportMetric(float64(real)*float64(b.N)/b.Elapsed().Seconds(), "steps/s")
			st := a.Stats()
			b.ReportMetric(float64(st.ComputedSteps)/float64(st.RealSteps), "computed/real")
			b.ReportMetric(float64(a.Stats().Batches)/float64(b.N), "batches/op")
		})
	}
}
