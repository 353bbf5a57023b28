package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/events"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/scoring"
)

// `dktscore bench --rows g`: the input replayed as events, one interaction
// at a time, scored two ways:
//
//	carried  event mode: each student's LSTM state is kept between events, so
//	         an event costs one LSTM step. Events arrive in polls; a poll's
//	         events are applied by events.Stepper, the stepping the event
//	         pipeline runs (rounds of one model.Step run each, one row per
//	         student per round, a student's events in order).
//	rescore  what event mode replaces: every event re-scores the student's whole
//	         history up to it with model.Predict (length-bucketed batches with
//	         score's policy). It costs O(history) per event, so it is measured
//	         on a systematic sample: every Nth event of the replay.
//
// Replay order: round-robin over the students in file order (the first
// interaction of every student, then the second of every student that has
// one, ...): the input has no timestamps, and this interleaves students as a
// live stream does. Both ways use every session: the replay is split into
// --sessions partitions by student (student i → partition i mod sessions),
// each applied by its own goroutine; rescore spreads its batches over the
// sessions as `bench --rows a` does. Timed: the model runs and the state gathering and
// scattering around them; not timed: building the replay and the batches.

// EventFlags are the event benchmark's own flags.
type EventFlags struct {
	poll         int
	rescoreEvery int
}

// Declare declares the event benchmark's flags, bound to e.
func (e *EventFlags) Declare(set *config.Set) {
	config.Int(set, &e.poll, config.Spec{Flag: "event-poll", Default: "500",
		Help: "--rows g: events per poll of one partition (serve's DKTSCORE_MAX_POLL_RECORDS default)"}).Check(config.AtLeast(1))
	config.Int(set, &e.rescoreEvery, config.Spec{Flag: "rescore-every", Default: "200",
		Help: "--rows g: re-score the history of every Nth event of the replay (a sample: re-scoring every event is O(history²))"}).Check(config.AtLeast(1))
}

type eventBenchRow struct {
	Row        string        `json:"row"` // "g"
	Name       string        `json:"name"`
	Replay     string        `json:"replay"`
	Students   int           `json:"students"`
	Events     int           `json:"events"`
	Poll       int           `json:"poll"`
	Sessions   int           `json:"sessions"`
	Threads    int           `json:"threads"`
	Signature  string        `json:"signature"` // what rescore's model.Predict runs
	Carried    carriedResult `json:"carried"`
	Rescore    rescoreResult `json:"rescore"`
	Speedup    float64       `json:"speedup"` // carried events/s ÷ rescore events/s
	PeakRSSKiB int64         `json:"peak_rss_kib"`
}

type carriedResult struct {
	Runs           []float64 `json:"runs_s"`
	Median         float64   `json:"median_s"`
	EventsPerSec   float64   `json:"events_per_s"`
	StepRuns       int       `json:"step_runs"`
	MeanRowsPerRun float64   `json:"mean_rows_per_run"`
	PeakRSSKiB     int64     `json:"peak_rss_kib"` // VmHWM after the carried passes, before re-scoring
}

type rescoreResult struct {
	SampleEvery    int       `json:"sample_every"`
	Events         int       `json:"events"`
	MeanPrefix     float64   `json:"mean_prefix"`      // mean history length re-scored per sampled event
	FullMeanPrefix float64   `json:"full_mean_prefix"` // the same over every event of the replay
	Computed       int       `json:"computed_steps"`
	Batches        int       `json:"batches"`
	Runs           []float64 `json:"runs_s"`
	Median         float64   `json:"median_s"`
	EventsPerSec   float64   `json:"events_per_s"`
}

// replayEvent is one interaction of the replay: the student (index into the
// sequences) and which of their interactions it is.
type replayEvent struct{ student, index int32 }

// roundRobinReplay interleaves the students' histories: round r holds the
// r-th interaction of every student (in file order) that has one.
func roundRobinReplay(seqs []records.Sequence) []replayEvent {
	total, longest := 0, 0
	for _, s := range seqs {
		total += s.Len()
		longest = max(longest, s.Len())
	}
	out := make([]replayEvent, 0, total)
	for r := range longest {
		for i, s := range seqs {
			if r < s.Len() {
				out = append(out, replayEvent{student: int32(i), index: int32(r)})
			}
		}
	}
	return out
}

func benchEvents(f scoring.Options, e *EventFlags, m *model.Model, seqs []records.Sequence, runs, warmup int, asJSON bool, stdout io.Writer) error {
	if e.poll < 1 || e.rescoreEvery < 1 {
		return fmt.Errorf("row g: --event-poll %d and --rescore-every %d must be at least 1", e.poll, e.rescoreEvery)
	}
	if !m.HasStep() {
		return fmt.Errorf("row g: %w", m.Step(context.Background(), model.StepInputs{}, model.StepOutputs{}))
	}
	replay := roundRobinReplay(seqs)
	res := eventBenchRow{Row: "g", Name: "event mode: carried state vs re-scoring the whole history per event",
		Replay: "round-robin over students in file order", Students: len(seqs), Events: len(replay), Poll: e.poll,
		Sessions: f.Sessions, Threads: gpu.ThreadsPerSession(f.Threads, f.Sessions), Signature: m.Signature}

	// (i) carried state.
	carried, err := newCarriedReplay(m, seqs, replay, f.Sessions, e.poll)
	if err != nil {
		return err
	}
	for pass := range warmup + runs {
		secs, err := carried.run()
		if err != nil {
			return err
		}
		if pass >= warmup {
			res.Carried.Runs = append(res.Carried.Runs, secs)
		}
	}
	res.Carried.Median = Median(res.Carried.Runs)
	res.Carried.EventsPerSec = float64(len(replay)) / res.Carried.Median
	res.Carried.StepRuns = carried.stepRuns()
	res.Carried.MeanRowsPerRun = float64(len(replay)) / float64(res.Carried.StepRuns)
	res.Carried.PeakRSSKiB = PeakRSSKiB()

	// (ii) re-scoring the history up to every sampled event.
	var prefixes []records.Sequence
	fullPrefix := 0
	for i, ev := range replay {
		fullPrefix += int(ev.index) + 1
		if i%e.rescoreEvery == 0 {
			s := seqs[ev.student]
			n := int(ev.index) + 1
			prefixes = append(prefixes, records.Sequence{StudentID: s.StudentID, Skills: s.Skills[:n], Correct: s.Correct[:n]})
		}
	}
	batches, err := bucketedBatches(f, m.NumSkills, prefixes)
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	outs := make([]model.Outputs, len(batches))
	r := &res.Rescore
	r.SampleEvery, r.Events, r.Batches = e.rescoreEvery, len(prefixes), len(batches)
	r.FullMeanPrefix = float64(fullPrefix) / float64(len(replay))
	real := 0
	for i, b := range batches {
		outs[i] = model.Outputs{Last: make([]float32, b.Size()*m.NumSkills)}
		real += b.RealSteps()
		r.Computed += b.ComputedSteps()
	}
	r.MeanPrefix = float64(real) / float64(len(prefixes))
	// A re-scoring pass is long (O(history) per event); its warm-up runs only
	// the first batches, enough for TensorFlow's first-run costs.
	warm := min(len(batches), 2*f.Sessions)
	for range warmup {
		if _, err := predictAll(m, f.Sessions, batches[:warm], outs[:warm]); err != nil {
			return err
		}
	}
	for range runs {
		secs, err := predictAll(m, f.Sessions, batches, outs)
		if err != nil {
			return err
		}
		r.Runs = append(r.Runs, secs)
	}
	r.Median = Median(r.Runs)
	r.EventsPerSec = float64(r.Events) / r.Median
	res.Speedup = res.Carried.EventsPerSec / r.EventsPerSec
	res.PeakRSSKiB = PeakRSSKiB()

	if asJSON {
		line, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", line)
		return nil
	}
	fmt.Fprintf(stdout, "g carried state: %d events (%s, polls of %d) median %.3fs of %d  %9.0f events/s  (%d step runs, %.1f rows each)  VmHWM %d MiB\n",
		res.Events, res.Replay, res.Poll, res.Carried.Median, runs, res.Carried.EventsPerSec, res.Carried.StepRuns, res.Carried.MeanRowsPerRun, res.Carried.PeakRSSKiB/1024)
	fmt.Fprintf(stdout, "g re-score history: every %dth event, %d events (mean history %.0f; %.0f over all events) median %.3fs  %9.1f events/s\n",
		r.SampleEvery, r.Events, r.MeanPrefix, r.FullMeanPrefix, r.Median, r.EventsPerSec)
	fmt.Fprintf(stdout, "g carried ÷ re-score = %.0f×  VmHWM %d MiB after both\n", res.Speedup, res.PeakRSSKiB/1024)
	return nil
}

// carriedReplay applies a replay with carried state, one partition per
// session, each with its own events.Stepper: the stepping event mode runs.
// Everything it needs is allocated once; a pass only runs the model and
// moves states.
type carriedReplay struct {
	seqs       []records.Sequence
	partitions []*replayPartition
}

type replayPartition struct {
	events  []replayEvent
	poll    int
	stepper *events.Stepper
	states  []float32 // [students, StateSize]: every student's carried state
	runs    int

	// students[s] is student s's events of the current poll; its State is
	// the student's row of states. order lists the poll's students in order
	// of first appearance, as the pipeline admits them.
	students []events.Student
	order    []*events.Student
}

func newCarriedReplay(m *model.Model, seqs []records.Sequence, replay []replayEvent, partitions, poll int) (*carriedReplay, error) {
	c := &carriedReplay{seqs: seqs}
	size := m.StateSize()
	for p := range partitions {
		// One session per partition, as the pipeline of one partition's
		// worker would have.
		stepper, err := events.NewStepper(events.ModelEngine(m), events.StepperConfig{Engines: 1})
		if err != nil {
			return nil, err
		}
		rp := &replayPartition{poll: poll, stepper: stepper, states: make([]float32, len(seqs)*size), students: make([]events.Student, len(seqs))}
		for i, s := range seqs {
			rp.students[i] = events.Student{ID: s.StudentID, State: rp.states[i*size : (i+1)*size]}
		}
		for _, ev := range replay {
			if int(ev.student)%partitions == p {
				rp.events = append(rp.events, ev)
			}
		}
		c.partitions = append(c.partitions, rp)
	}
	return c, nil
}

func (c *carriedReplay) stepRuns() int {
	n := 0
	for _, p := range c.partitions {
		n += p.runs
	}
	return n
}

// run applies the whole replay from zero states and returns the wall time.
func (c *carriedReplay) run() (float64, error) {
	for _, p := range c.partitions {
		clear(p.states)
		p.runs = 0
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.partitions))
	start := time.Now()
	for i, p := range c.partitions {
		wg.Go(func() { errs[i] = p.apply(c.seqs) })
	}
	wg.Wait()
	return time.Since(start).Seconds(), errors.Join(errs...)
}

// apply runs the partition's events poll by poll. The replay takes each
// history in order, so a student's events in one poll are consecutive
// interactions: a slice of its history, grown by one per event.
func (p *replayPartition) apply(seqs []records.Sequence) error {
	ctx := context.Background()
	for start := 0; start < len(p.events); start += p.poll {
		poll := p.events[start:min(start+p.poll, len(p.events))]
		p.order = p.order[:0]
		for _, ev := range poll {
			st, seq := &p.students[ev.student], seqs[ev.student]
			if len(st.Skills) == 0 {
				p.order = append(p.order, st)
				st.Skills, st.Correct = seq.Skills[ev.index:ev.index], seq.Correct[ev.index:ev.index]
			}
			st.Skills, st.Correct = st.Skills[:len(st.Skills)+1], st.Correct[:len(st.Correct)+1]
		}
		stats, err := p.stepper.Apply(ctx, p.order)
		p.runs += stats.Runs
		if err != nil {
			return err
		}
		for _, st := range p.order {
			st.Skills, st.Correct = nil, nil
		}
	}
	return nil
}

// benchEventsCmd runs the event benchmark on a model and input of its own.
func Events(f scoring.Options, e *EventFlags, runs, warmup int, asJSON bool, stdout io.Writer) error {
	m, err := scoring.LoadModel(f)
	if err != nil {
		return err
	}
	defer m.Close()
	seqs, err := ReadAll(f, m.NumSkills)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		return fmt.Errorf("%s: no valid sequences", f.Input)
	}
	return benchEvents(f, e, m, seqs, runs, warmup, asJSON, stdout)
}
