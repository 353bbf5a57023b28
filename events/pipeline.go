package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/state"
)

// Store is where the pipeline keeps per-student state (state.Store).
type Store interface {
	// Get returns the student's state in the partition, from memory or, for
	// an evicted student, from the changelog; false when there is none.
	Get(ctx context.Context, partition int32, student string) (state.Record, bool, error)
	// Put holds a new state in memory. The pipeline calls it only once the
	// poll that produced the state is committed, and Durable right after.
	Put(partition int32, r state.Record)
	// Durable says the changelog holds the state of appliedOffset at changelogOffset.
	Durable(partition int32, student string, changelogOffset, appliedOffset int64)
	// DropPartition forgets a partition this worker no longer owns.
	DropPartition(partition int32)
}

// Log is the Kafka side of event mode, one implementation per delivery
// mode. Every method is called from the pipeline's one goroutine.
type Log interface {
	// Poll returns the next messages (at least one unless ctx ends), in
	// offset order within each partition, each with its ack. At-least-once:
	// an ack(nil) marks the input offset for commit. Exactly-once: acks are
	// nil; Commit finishes the whole poll.
	Poll(ctx context.Context) ([]kafka.Message, []func(error), error)
	// WriteResults produces results and dead letters (the key picks the
	// partition) and returns once the broker acknowledged all of them.
	WriteResults(ctx context.Context, msgs []kafka.Message) error
	// WriteStates produces changelog records, each to the partition its
	// Partition field names, and returns their offsets once all are
	// acknowledged.
	WriteStates(ctx context.Context, msgs []kafka.Message) ([]int64, error)
	// Commit ends the poll. Exactly-once: commit=true commits the poll's
	// writes and input offsets in one transaction (kafka.ErrAborted: a
	// rebalance aborted it; the messages come again); commit=false aborts.
	// At-least-once: nothing to do (the acks mark the offsets).
	Commit(ctx context.Context, commit bool) error
}

// Config configures the event pipeline.
type Config struct {
	ModelVersion    string // "name/version" of the running model; states of other versions are not used
	Model           string // model name, for the output headers
	OutputTopic     string
	DeadLetterTopic string
	ChangelogTopic  string
	// MaxMessageBytes: larger input messages are dead-lettered undecoded.
	MaxMessageBytes int
	// Engines is how many Step runs of one round may go concurrently; match
	// it to the model's session pool. 0 or 1: one at a time.
	Engines int
	// Log receives at most a line or two per poll about what it did not
	// apply (states of another model version, events already applied),
	// with counts, partitions and offsets, never student ids; nil discards.
	Logger *slog.Logger
}

func (c Config) validate() error {
	var errs []error
	add := func(cond bool, format string, args ...any) {
		if cond {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	add(c.ModelVersion == "", "event pipeline: ModelVersion is empty; set it to the model's name/version")
	add(c.OutputTopic == "", "event pipeline: OutputTopic is empty; name the topic for results")
	add(c.DeadLetterTopic == "", "event pipeline: DeadLetterTopic is empty; bad events need a topic to go to")
	add(c.ChangelogTopic == "", "event pipeline: ChangelogTopic is empty; states need a changelog topic")
	return errors.Join(errs...)
}

// Progress counts what the event pipeline did; readable while it runs.
// The per-event counters (Applied, Skipped, Rejected, VersionResets,
// NotOwned) count a poll once it is committed: an aborted exactly-once poll
// comes again and is counted then, not twice. Consumed, StepRuns and
// StepRows count work done, aborted or not.
type Progress struct {
	Consumed      atomic.Int64 // messages polled
	Applied       atomic.Int64 // events applied to a state (one result each)
	Skipped       atomic.Int64 // events at or before their state's offset: already applied
	Rejected      atomic.Int64 // events sent to the dead-letter topic
	VersionResets atomic.Int64 // states of another model version that were not used
	NotOwned      atomic.Int64 // events of partitions revoked before they were applied (redelivered to the owner)
	StepRuns      atomic.Int64 // Step calls
	StepRows      atomic.Int64 // rows over all Step calls
	Aborted       atomic.Int64 // exactly-once polls aborted by a rebalance
}

// errNotOwned acks an event of a partition this worker lost before applying
// it: its offset is never committed here, and the new owner applies it.
var errNotOwned = errors.New("the partition was revoked before the event was applied")

// Pipeline applies events to carried per-student state: each poll's
// events are grouped by partition and student, applied by a Stepper (one
// row per student per round, a student's events in offset order), and made
// durable in the order results → changelog → input
// offsets (or in one transaction).
//
// A poll's new states stay with the poll until it is committed, and only
// then go to the store (Put, then Durable at once): an aborted transaction
// or a failed write leaves the store as it was, so the redelivered events
// find the states they were first applied to.
//
// # Rebalances
//
// The consumer calls PartitionsAssigned once a partition's states are
// restored from the changelog, and PartitionsRevoked when it loses one.
// Polls are applied under mu, and PartitionsRevoked takes mu, so a revoke
// waits until the poll being applied has written its results and states,
// and states are dropped only between polls. Exactly-once ends the
// transaction outside mu (kgo's revoke callback holds the session's lock
// that End needs), so after End the pipeline re-takes mu and keeps a new
// state in memory only if its partition was not revoked meanwhile: the
// generation counter tells.
type Pipeline struct {
	cfg      Config
	engine   Engine
	stepper  *Stepper
	store    Store
	log      Log
	progress *Progress
	output   columnar.Config

	mu    sync.Mutex
	owned map[int32]uint64 // partition → generation at assignment; absent when not owned
	gen   uint64
}

// NewPipeline checks cfg and the engine.
func NewPipeline(cfg Config, engine Engine, store Store, log Log, progress *Progress) (*Pipeline, error) {
	stepper, err := NewStepper(engine, StepperConfig{Engines: cfg.Engines})
	if err != nil {
		err = fmt.Errorf("event pipeline: model %s: %w", cfg.ModelVersion, err)
	}
	if err := errors.Join(cfg.validate(), err); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = new(Progress)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	output := columnar.Config{NumSkills: engine.NumSkills(), ModelVersion: cfg.ModelVersion, WithSource: true}
	return &Pipeline{cfg: cfg, engine: engine, stepper: stepper, store: store, log: log, progress: progress, output: output,
		owned: map[int32]uint64{}}, nil
}

// PartitionsAssigned says the partitions' states are restored: their events
// may be applied from now on.
func (p *Pipeline) PartitionsAssigned(partitions []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range partitions {
		p.gen++
		p.owned[part] = p.gen
	}
}

// PartitionsRevoked waits for the poll being applied, then forgets the
// partitions' states: their next owner restores them from the changelog.
func (p *Pipeline) PartitionsRevoked(partitions []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range partitions {
		delete(p.owned, part)
		p.store.DropPartition(part)
	}
}

// Run applies polls until ctx ends (the current poll is finished first) or a
// fatal error: an engine, store or write failure stops the worker, because
// retrying would hide it; unfinished input is redelivered after a restart.
func (p *Pipeline) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		msgs, acks, err := p.log.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		p.progress.Consumed.Add(int64(len(msgs)))
		// A poll that has begun is finished even when a stop arrives: its
		// writes are durable or aborted as a whole, never half-done.
		if err := p.poll(context.WithoutCancel(ctx), msgs, acks); err != nil {
			return err
		}
	}
	return nil
}

// studentEvents is one student's events of one partition in one poll.
type studentEvents struct {
	partition int32
	student   string
	gen       uint64 // ownership generation of the partition when applied
	rec       state.Record
	events    []int   // indexes into the poll, in offset order
	step      Student // the events still to apply, on rec.State
}

// appliedState is a state the poll produced, with where the changelog has it.
type appliedState struct {
	gen             uint64
	rec             state.Record
	changelogOffset int64
}

func (p *Pipeline) poll(ctx context.Context, msgs []kafka.Message, acks []func(error)) error {
	ackAll := func(err error) {
		for _, ack := range acks {
			if ack != nil {
				ack(err)
			}
		}
	}
	p.mu.Lock()
	out, err := p.apply(ctx, msgs)
	p.mu.Unlock()
	if err != nil {
		ackAll(err)
		return errors.Join(err, p.log.Commit(ctx, false))
	}
	if err := p.log.Commit(ctx, true); err != nil {
		ackAll(err)
		if errors.Is(err, kafka.ErrAborted) {
			p.progress.Aborted.Add(1)
			return nil // nothing was kept in memory; the messages come again
		}
		return err
	}
	p.mu.Lock()
	for _, s := range out.states {
		if p.owned[s.rec.Partition] != s.gen {
			continue // revoked since: the changelog has it for the next owner
		}
		p.store.Put(s.rec.Partition, s.rec)
		p.store.Durable(s.rec.Partition, s.rec.StudentID, s.changelogOffset, s.rec.Offset)
	}
	p.mu.Unlock()
	p.report(out)
	for i, ack := range acks {
		if ack != nil {
			ack(out.ackErrs[i])
		}
	}
	return nil
}

// pollOutcome is what apply did with one poll, kept until it is committed.
type pollOutcome struct {
	states   []appliedState
	ackErrs  []error // per message
	applied  int
	rejected int
	notOwned int
	skipped  map[int32]*offsetRange   // partition → events already applied
	resets   map[int32]map[string]int // partition → state model version → students started over
}

// offsetRange is the span of offsets of some events of one partition.
type offsetRange struct {
	first, last int64
	n           int
}

func (r *offsetRange) add(offset int64) {
	if r.n == 0 || offset < r.first {
		r.first = offset
	}
	r.last = max(r.last, offset)
	r.n++
}

// report counts a committed poll and logs, in one line each, the events it
// skipped and the states it could not use. Lines name partitions, offsets and
// versions, never students: ids are personal data and stay out of logs.
func (p *Pipeline) report(out pollOutcome) {
	p.progress.Applied.Add(int64(out.applied))
	p.progress.Rejected.Add(int64(out.rejected))
	p.progress.NotOwned.Add(int64(out.notOwned))
	if len(out.skipped) > 0 {
		var spans []string
		total := 0
		for _, part := range slices.Sorted(maps.Keys(out.skipped)) {
			r := out.skipped[part]
			total += r.n
			spans = append(spans, fmt.Sprintf("partition %d offsets %d..%d (%d)", part, r.first, r.last, r.n))
		}
		p.progress.Skipped.Add(int64(total))
		p.cfg.Logger.Info("dktscore: events already applied to their students' states skipped (a redelivery after a restart or rebalance)",
			"skipped", total, "where", strings.Join(spans, ", "))
	}
	if len(out.resets) > 0 {
		var spans []string
		total := 0
		for _, part := range slices.Sorted(maps.Keys(out.resets)) {
			for _, version := range slices.Sorted(maps.Keys(out.resets[part])) {
				n := out.resets[part][version]
				total += n
				spans = append(spans, fmt.Sprintf("partition %d: %d of %q", part, n, version))
			}
		}
		p.progress.VersionResets.Add(int64(total))
		p.cfg.Logger.Warn("dktscore: states of another model version or size not used; those students start over (re-bootstrap the changelog after changing the model)",
			"students", total, "states", strings.Join(spans, ", "), "model_version", p.cfg.ModelVersion, "model_state_size", p.engine.StateSize())
	}
}

// apply decodes, groups, steps and writes one poll; p.mu is held. It
// returns the new states to keep once the poll is committed, each message's
// ack error and what to count then.
func (p *Pipeline) apply(ctx context.Context, msgs []kafka.Message) (pollOutcome, error) {
	numSkills := p.engine.NumSkills()
	out := pollOutcome{ackErrs: make([]error, len(msgs)), skipped: map[int32]*offsetRange{}, resets: map[int32]map[string]int{}}
	decoded := make([]records.Event, len(msgs))
	var deadLetters []kafka.Message
	groups := map[partitionStudent]*studentEvents{}
	var order []*studentEvents // first appearance: deterministic rounds
	for i, m := range msgs {
		gen, owned := p.owned[m.Partition]
		if !owned {
			out.ackErrs[i] = errNotOwned
			out.notOwned++
			continue
		}
		ev, reject := decodeEvent(m, numSkills, p.cfg.MaxMessageBytes)
		if reject != nil {
			deadLetters = append(deadLetters, kafka.DeadLetter(m, p.cfg.DeadLetterTopic, reject.Reason))
			continue
		}
		decoded[i] = ev
		key := partitionStudent{m.Partition, ev.StudentID}
		g := groups[key]
		if g == nil {
			g = &studentEvents{partition: m.Partition, student: ev.StudentID, gen: gen}
			groups[key] = g
			order = append(order, g)
		}
		g.events = append(g.events, i)
	}

	// Load each student's state and drop the events it already holds.
	for _, g := range order {
		rec, reset, err := p.startingState(ctx, msgs[g.events[0]], g.student)
		if err != nil {
			return pollOutcome{}, err
		}
		if reset != "" {
			if out.resets[g.partition] == nil {
				out.resets[g.partition] = map[string]int{}
			}
			out.resets[g.partition][reset]++
		}
		g.rec = rec
		pending := g.events[:0]
		for _, i := range g.events {
			if rec.Partition == g.partition && msgs[i].Offset <= rec.Offset {
				// Its result and state are already durable.
				r := out.skipped[g.partition]
				if r == nil {
					r = new(offsetRange)
					out.skipped[g.partition] = r
				}
				r.add(msgs[i].Offset)
				continue
			}
			pending = append(pending, i)
		}
		g.events = pending
	}

	rows, err := p.step(ctx, msgs, decoded, order)
	if err != nil {
		return pollOutcome{}, err
	}

	// Durability order: results and dead letters, then states; the input
	// offsets follow (acks, or the transaction's commit).
	results, err := p.resultMessages(rows)
	if err != nil {
		return pollOutcome{}, err
	}
	if written := append(results, deadLetters...); len(written) > 0 {
		if err := p.log.WriteResults(ctx, written); err != nil {
			return pollOutcome{}, fmt.Errorf("writing %d results and %d dead letters: %w", len(rows), len(deadLetters), err)
		}
	}
	var changed []*studentEvents
	var changelog []kafka.Message
	for _, g := range order {
		if len(g.events) == 0 {
			continue
		}
		changed = append(changed, g)
		changelog = append(changelog, kafka.Message{Topic: p.cfg.ChangelogTopic, Partition: g.partition,
			Key: []byte(g.student), Value: g.rec.Encode()})
	}
	var offsets []int64
	if len(changelog) > 0 {
		offsets, err = p.log.WriteStates(ctx, changelog)
		if err != nil {
			return pollOutcome{}, fmt.Errorf("writing %d states to changelog topic %q: %w", len(changelog), p.cfg.ChangelogTopic, err)
		}
		if len(offsets) != len(changelog) {
			return pollOutcome{}, fmt.Errorf("writing states to changelog topic %q: %d offsets for %d records", p.cfg.ChangelogTopic, len(offsets), len(changelog))
		}
	}
	out.states = make([]appliedState, len(changed))
	for i, g := range changed {
		out.states[i] = appliedState{gen: g.gen, rec: g.rec, changelogOffset: offsets[i]}
	}
	out.applied, out.rejected = len(rows), len(deadLetters)
	return out, nil
}

type partitionStudent struct {
	partition int32
	student   string
}

// startingState is the state that student's next event (first, the
// message) applies to: the stored one, or no history when there is none or
// it cannot be used; then reset names the unusable state's model version
// (and size) for the poll's log line.
func (p *Pipeline) startingState(ctx context.Context, first kafka.Message, student string) (rec state.Record, reset string, err error) {
	partition := first.Partition
	rec, found, err := p.store.Get(ctx, partition, student)
	if err != nil {
		// The student id stays out: this error ends in the worker's log.
		return state.Record{}, "", fmt.Errorf("reading the stored state for the event at %s[%d] offset %d: %w", first.Topic, partition, first.Offset, err)
	}
	fresh := state.Record{StudentID: student, ModelVersion: p.cfg.ModelVersion, Partition: partition, Offset: -1,
		State: make([]float32, p.engine.StateSize())}
	if !found {
		return fresh, "", nil
	}
	if rec.ModelVersion != p.cfg.ModelVersion || len(rec.State) != p.engine.StateSize() {
		// A state only means something to the weights that produced it.
		// Starting over is visible (metric, log); re-bootstrapping the
		// changelog with `score --emit-state` avoids it.
		return fresh, fmt.Sprintf("%s, %d floats", rec.ModelVersion, len(rec.State)), nil
	}
	rec.StudentID = student
	rec.State = append([]float32(nil), rec.State...) // the store's copy is not changed before the poll commits
	return rec, "", nil
}

// step applies each student's pending events to its state with the stepper
// (in rounds: one Step row per student per round) and returns a result row
// per event.
func (p *Pipeline) step(ctx context.Context, msgs []kafka.Message, decoded []records.Event, order []*studentEvents) ([]columnar.EventRow, error) {
	s := p.engine.NumSkills()
	pending := 0
	for _, g := range order {
		pending += len(g.events)
	}
	// The result rows keep slices of mastery, allocated once for the poll.
	mastery := make([]float32, pending*s)
	var students []*Student
	for _, g := range order {
		n := len(g.events)
		if n == 0 {
			continue
		}
		g.step = Student{ID: g.student, State: g.rec.State, Skills: make([]int32, n), Correct: make([]int8, n), Mastery: mastery[: n*s : n*s]}
		mastery = mastery[n*s:]
		for k, i := range g.events {
			g.step.Skills[k], g.step.Correct[k] = decoded[i].SkillID, decoded[i].Correct
		}
		students = append(students, &g.step)
	}
	stats, err := p.stepper.Apply(ctx, students)
	p.progress.StepRuns.Add(int64(stats.Runs))
	p.progress.StepRows.Add(int64(stats.Rows))
	if err != nil {
		return nil, p.stepError(msgs, order, err)
	}

	rows := make([]columnar.EventRow, 0, pending)
	for _, g := range order {
		for k, i := range g.events {
			m := msgs[i]
			g.rec.Partition, g.rec.Offset = m.Partition, m.Offset
			g.rec.Events++
			rows = append(rows, columnar.EventRow{StudentID: g.student, EventOffset: m.Offset,
				SkillID: g.step.Skills[k], Correct: g.step.Correct[k], Events: g.rec.Events, Mastery: g.step.Mastery[k*s : (k+1)*s],
				SourceTopic: m.Topic, SourcePartition: m.Partition, SourceOffset: m.Offset})
		}
	}
	// Within a poll, results go out by partition and offset. Across messages
	// and polls there is no order: result messages have no key (they spread
	// over the output's partitions), at-least-once produces them
	// concurrently, and a redelivery repeats earlier results. Consumers order
	// (and deduplicate) by event_offset per source_partition.
	slices.SortFunc(rows, func(a, b columnar.EventRow) int {
		if c := cmp.Compare(a.SourcePartition, b.SourcePartition); c != 0 {
			return c
		}
		return cmp.Compare(a.SourceOffset, b.SourceOffset)
	})
	return rows, nil
}

// stepError names the event a NaN or infinite state or mastery came from:
// written to the changelog, such a state would be refused on every later
// read (DecodeRecord) and block the partition for good, so the poll fails
// and nothing of it is written.
func (p *Pipeline) stepError(msgs []kafka.Message, order []*studentEvents, err error) error {
	var nonFinite *NonFiniteError
	if !errors.As(err, &nonFinite) {
		return err
	}
	for _, g := range order {
		if &g.step != nonFinite.Student {
			continue
		}
		m := msgs[g.events[nonFinite.Interaction]]
		return fmt.Errorf("model %s returned %s = %v for the event at %s[%d] offset %d; nothing of this poll was written (a non-finite state would poison the changelog): check the model's weights, or roll back to a version that works",
			p.cfg.ModelVersion, nonFinite.What, nonFinite.Value, m.Topic, m.Partition, m.Offset)
	}
	return err
}

// resultMessages encodes rows as Arrow IPC stream messages of at most about
// kafka.MaxResultBytes each.
func (p *Pipeline) resultMessages(rows []columnar.EventRow) ([]kafka.Message, error) {
	var out []kafka.Message
	now := time.Now()
	for start := 0; start < len(rows); {
		end, size := start, 0
		for end < len(rows) {
			// The mastery floats, the fixed-width columns and the strings.
			size += 4*p.output.NumSkills + 64 + len(rows[end].StudentID) + len(rows[end].SourceTopic)
			if size > kafka.MaxResultBytes && end > start {
				break
			}
			end++
		}
		value, err := columnar.EncodeEventIPCStream(p.output, rows[start:end], now)
		if err != nil {
			return nil, err
		}
		out = append(out, kafka.ResultMessage(p.cfg.OutputTopic, p.cfg.Model, p.cfg.ModelVersion, end-start, value))
		start = end
	}
	return out, nil
}

// decodeEvent turns one message into an event, or the reason it is
// dead-lettered. The key must be the student_id: it is what keeps a
// student's events in one partition, in order.
func decodeEvent(m kafka.Message, numSkills, maxBytes int) (records.Event, *records.RejectError) {
	where := fmt.Sprintf("%s[%d]@%d", m.Topic, m.Partition, m.Offset)
	reject := func(student string, kind records.RejectKind, reason string) (records.Event, *records.RejectError) {
		return records.Event{}, &records.RejectError{Input: where, Record: -1, StudentID: student, Kind: kind, Reason: reason}
	}
	if maxBytes > 0 && len(m.Value) > maxBytes {
		return reject(string(m.Key), records.RejectTooLarge, fmt.Sprintf("message of %d bytes exceeds the %d-byte limit; an event is one small JSON object, or raise DKTSCORE_MAX_MESSAGE_BYTES", len(m.Value), maxBytes))
	}
	ev, err := records.DecodeJSONEvent(m.Value, numSkills)
	var rej *records.RejectError
	if errors.As(err, &rej) {
		rej.Input = where
		return records.Event{}, rej
	}
	if err != nil {
		// DecodeJSONEvent reports every bad record as a RejectError; any other
		// error is unexpected, so no record kind can be claimed for it.
		return reject("", records.RejectOther, err.Error())
	}
	switch {
	case len(m.Key) == 0:
		return reject(ev.StudentID, records.RejectBadStudentID, fmt.Sprintf("message has no key; produce events keyed by student_id (%q here) so a student's events stay in one partition, in order", ev.StudentID))
	case string(m.Key) != ev.StudentID:
		return reject(ev.StudentID, records.RejectBadStudentID, fmt.Sprintf("message key %q is not the student_id %q; key events by student_id so a student's events stay in one partition, in order", m.Key, ev.StudentID))
	}
	return ev, nil
}
