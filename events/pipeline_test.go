package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/state"
)

// hashEngine is a stand-in model whose state is (events seen, a hash of the
// interactions in order): any reordering, loss or double application of an
// event changes every later value, as with the real LSTM.
type hashEngine struct {
	mu   sync.Mutex
	runs [][]int32 // skills of each Step call
}

const eventSkills = 4

func (e *hashEngine) NumSkills() int { return eventSkills }
func (e *hashEngine) StateSize() int { return 2 }
func (e *hashEngine) Step(_ context.Context, skills, correct []int32, st, newState, mastery []float32) error {
	e.mu.Lock()
	e.runs = append(e.runs, append([]int32(nil), skills...))
	e.mu.Unlock()
	for i := range skills {
		n, h := st[2*i], st[2*i+1]
		h = float32(int(h*3+float32(2*skills[i]+correct[i]+1)) % 65521)
		newState[2*i], newState[2*i+1] = n+1, h
		for k := range eventSkills {
			mastery[i*eventSkills+k] = h + float32(k)
		}
	}
	return nil
}

// replay is what hashEngine gives for a student's events applied in order.
func replay(events [][2]int32) (masteries [][]float32, final []float32) {
	st := []float32{0, 0}
	for _, ev := range events {
		m := make([]float32, eventSkills)
		(&hashEngine{}).Step(context.Background(), []int32{ev[0]}, []int32{ev[1]}, st, st, m)
		masteries = append(masteries, m)
	}
	return masteries, st
}

type memStore struct {
	recs    map[partitionStudent]state.Record
	durable map[partitionStudent]int64
	dropped []int32
	getErr  error // Get fails with it when set
}

func newMemStore() *memStore {
	return &memStore{recs: map[partitionStudent]state.Record{}, durable: map[partitionStudent]int64{}}
}

func (s *memStore) Get(_ context.Context, partition int32, student string) (state.Record, bool, error) {
	if s.getErr != nil {
		return state.Record{}, false, s.getErr
	}
	r, ok := s.recs[partitionStudent{partition, student}]
	return r, ok, nil
}
func (s *memStore) Put(partition int32, r state.Record) {
	s.recs[partitionStudent{partition, r.StudentID}] = r
}
func (s *memStore) Durable(partition int32, student string, changelogOffset, _ int64) {
	s.durable[partitionStudent{partition, student}] = changelogOffset
}
func (s *memStore) DropPartition(partition int32) {
	s.dropped = append(s.dropped, partition)
	for k := range s.recs {
		if k.partition == partition {
			delete(s.recs, k)
		}
	}
}

// scriptedLog hands out scripted polls and records what the pipeline wrote,
// in order, so tests can check the durability order.
type scriptedLog struct {
	polls      [][]kafka.Message
	exactly    bool
	abortNext  bool // Commit(true) of the next poll returns ErrAborted
	trace      []string
	results    []kafka.Message
	states     []kafka.Message
	ackErrs    map[string]error // "partition@offset" → the ack's error
	nextOffset int64
	onPoll     func(n int) // runs before poll n is handed out
}

func (l *scriptedLog) Poll(ctx context.Context) ([]kafka.Message, []func(error), error) {
	if len(l.polls) == 0 {
		return nil, nil, io.EOF
	}
	msgs := l.polls[0]
	l.polls = l.polls[1:]
	acks := make([]func(error), len(msgs))
	if !l.exactly {
		for i, m := range msgs {
			where := fmt.Sprintf("%d@%d", m.Partition, m.Offset)
			acks[i] = func(err error) {
				l.trace = append(l.trace, "ack")
				l.ackErrs[where] = err
			}
		}
	}
	return msgs, acks, nil
}

func (l *scriptedLog) WriteResults(_ context.Context, msgs []kafka.Message) error {
	l.trace = append(l.trace, "results")
	l.results = append(l.results, msgs...)
	return nil
}

func (l *scriptedLog) WriteStates(_ context.Context, msgs []kafka.Message) ([]int64, error) {
	l.trace = append(l.trace, "states")
	offsets := make([]int64, len(msgs))
	for i := range msgs {
		offsets[i] = l.nextOffset
		l.nextOffset++
	}
	l.states = append(l.states, msgs...)
	return offsets, nil
}

func (l *scriptedLog) Commit(_ context.Context, commit bool) error {
	l.trace = append(l.trace, fmt.Sprintf("commit(%t)", commit))
	if commit && l.abortNext {
		l.abortNext = false
		return kafka.ErrAborted
	}
	return nil
}

func event(partition int32, offset int64, student string, skill, correct int) kafka.Message {
	return kafka.Message{Topic: "in", Partition: partition, Offset: offset, Key: []byte(student),
		Value: fmt.Appendf(nil, `{"student_id":%q,"skill_id":%d,"correct":%d}`, student, skill, correct)}
}

type resultRow struct {
	student            string
	offset, events     int64
	skill              int32
	correct            int8
	mastery            []float32
	partition, srcPart int32
}

func decodeResults(t *testing.T, msgs []kafka.Message) []resultRow {
	t.Helper()
	var rows []resultRow
	for _, m := range msgs {
		if m.Topic != "out" {
			continue
		}
		r, err := ipc.NewReader(bytes.NewReader(m.Value))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			rec := r.RecordBatch()
			ids := rec.Column(0).(*array.String)
			offs := rec.Column(1).(*array.Int64)
			skills := rec.Column(2).(*array.Int32)
			correct := rec.Column(3).(*array.Int8)
			events := rec.Column(4).(*array.Int64)
			mastery := rec.Column(5).(*array.FixedSizeList).ListValues().(*array.Float32).Float32Values()
			parts := rec.Column(9).(*array.Int32)
			for i := range int(rec.NumRows()) {
				rows = append(rows, resultRow{student: ids.Value(i), offset: offs.Value(i), events: events.Value(i),
					skill: skills.Value(i), correct: correct.Value(i), srcPart: parts.Value(i),
					mastery: append([]float32(nil), mastery[i*eventSkills:(i+1)*eventSkills]...)})
			}
		}
		r.Release()
	}
	return rows
}

func newTestPipeline(t *testing.T, log *scriptedLog, store *memStore, engine *hashEngine, owned ...int32) (*Pipeline, *Progress) {
	t.Helper()
	if log.ackErrs == nil {
		log.ackErrs = map[string]error{}
	}
	progress := new(Progress)
	p, err := NewPipeline(Config{ModelVersion: "dkt/1", Model: "dkt", OutputTopic: "out", DeadLetterTopic: "dlq",
		ChangelogTopic: "dkt.state", MaxMessageBytes: 1000}, engine, store, log, progress)
	if err != nil {
		t.Fatal(err)
	}
	p.PartitionsAssigned(owned)
	return p, progress
}

func runPipeline(t *testing.T, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Run = %v, want io.EOF from the exhausted script", err)
	}
}

func TestEventRoundsKeepEachStudentsOrder(t *testing.T) {
	// Partition 0: a has 3 events, b 1, interleaved; partition 1: c has 2,
	// and a student "a" of its own (states are per partition).
	poll := []kafka.Message{
		event(0, 10, "a", 1, 1), event(0, 11, "b", 2, 0), event(0, 12, "a", 3, 0), event(0, 13, "a", 0, 1),
		event(1, 5, "c", 3, 1), event(1, 6, "a", 2, 1), event(1, 7, "c", 1, 0),
	}
	log := &scriptedLog{polls: [][]kafka.Message{poll}}
	store, engine := newMemStore(), &hashEngine{}
	p, progress := newTestPipeline(t, log, store, engine, 0, 1)
	runPipeline(t, p)

	// One row per student per run: rounds of 4 (a,b,c,a'), 2 (a,c), 1 (a).
	var sizes []int
	for _, r := range engine.runs {
		sizes = append(sizes, len(r))
	}
	if fmt.Sprint(sizes) != "[4 2 1]" {
		t.Fatalf("Step batch sizes %v, want [4 2 1]", sizes)
	}
	want := map[partitionStudent][][2]int32{
		{0, "a"}: {{1, 1}, {3, 0}, {0, 1}}, {0, "b"}: {{2, 0}}, {1, "c"}: {{3, 1}, {1, 0}}, {1, "a"}: {{2, 1}},
	}
	rows := decodeResults(t, log.results)
	if len(rows) != len(poll) {
		t.Fatalf("%d results for %d events", len(rows), len(poll))
	}
	seen := map[partitionStudent]int{}
	for i, r := range rows {
		if i > 0 && (rows[i-1].srcPart > r.srcPart || rows[i-1].srcPart == r.srcPart && rows[i-1].offset >= r.offset) {
			t.Errorf("results not in partition/offset order at row %d", i)
		}
		key := partitionStudent{r.srcPart, r.student}
		masteries, _ := replay(want[key])
		k := seen[key]
		seen[key]++
		if r.events != int64(k+1) || fmt.Sprint(r.mastery) != fmt.Sprint(masteries[k]) {
			t.Errorf("%v event %d (offset %d): events=%d mastery=%v, want events=%d mastery=%v", key, k, r.offset, r.events, r.mastery, k+1, masteries[k])
		}
	}
	for key, evs := range want {
		_, final := replay(evs)
		rec := store.recs[key]
		if fmt.Sprint(rec.State) != fmt.Sprint(final) || rec.Events != int64(len(evs)) || rec.ModelVersion != "dkt/1" {
			t.Errorf("stored state of %v = %+v, want state %v after %d events", key, rec, final, len(evs))
		}
	}
	if got := progress.Applied.Load(); got != 7 {
		t.Errorf("applied = %d, want 7", got)
	}
	// The changelog gets one record per student, on the input's partition.
	if len(log.states) != 4 {
		t.Fatalf("%d changelog records, want 4", len(log.states))
	}
	for _, m := range log.states {
		rec, err := state.DecodeRecord(m.Key, m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if m.Topic != "dkt.state" || m.Partition != rec.Partition || store.durable[partitionStudent{m.Partition, rec.StudentID}] < 0 {
			t.Errorf("changelog record %+v went to %s[%d]", rec, m.Topic, m.Partition)
		}
		if last := map[partitionStudent]int64{{0, "a"}: 13, {0, "b"}: 11, {1, "c"}: 7, {1, "a"}: 6}[partitionStudent{m.Partition, rec.StudentID}]; rec.Offset != last {
			t.Errorf("changelog record of %s[%d] has offset %d, want the last applied %d", rec.StudentID, m.Partition, rec.Offset, last)
		}
	}
	if got := strings.Join(log.trace, ","); got != "results,states,commit(true)"+strings.Repeat(",ack", 7) {
		t.Errorf("durability order %s; want results, then states, then commit, then acks", got)
	}
}

func TestEventStateCarriesAcrossPollsAndSkipsApplied(t *testing.T) {
	evs := [][2]int32{{1, 1}, {2, 0}, {3, 1}, {0, 0}}
	polls := [][]kafka.Message{
		{event(0, 0, "a", 1, 1), event(0, 1, "a", 2, 0)},
		// Redelivery after a crash before the commit: 0 and 1 again, then new ones.
		{event(0, 0, "a", 1, 1), event(0, 1, "a", 2, 0), event(0, 2, "a", 3, 1)},
		{event(0, 3, "a", 0, 0)},
	}
	log := &scriptedLog{polls: polls}
	store := newMemStore()
	p, progress := newTestPipeline(t, log, store, &hashEngine{}, 0)
	runPipeline(t, p)
	rows := decodeResults(t, log.results)
	masteries, final := replay(evs)
	if len(rows) != 4 {
		t.Fatalf("%d results, want 4 (the redelivered events are skipped)", len(rows))
	}
	for i, r := range rows {
		if r.offset != int64(i) || fmt.Sprint(r.mastery) != fmt.Sprint(masteries[i]) {
			t.Errorf("result %d: offset %d mastery %v, want offset %d mastery %v", i, r.offset, r.mastery, i, masteries[i])
		}
	}
	if got := progress.Skipped.Load(); got != 2 {
		t.Errorf("skipped = %d, want 2", got)
	}
	if rec := store.recs[partitionStudent{0, "a"}]; fmt.Sprint(rec.State) != fmt.Sprint(final) || rec.Offset != 3 || rec.Events != 4 {
		t.Errorf("final state %+v, want %v at offset 3 after 4 events", rec, final)
	}
	for where, err := range log.ackErrs {
		if err != nil {
			t.Errorf("event %s acked with %v; skipped events are done too", where, err)
		}
	}
}

func TestEventStatesOfOtherModelsOrBootstrapsAreHandled(t *testing.T) {
	store := newMemStore()
	// Another model version: not used. A bootstrap (-1/-1) of this version: carried.
	store.Put(0, state.Record{StudentID: "old", ModelVersion: "dkt/0", Partition: 0, Offset: 100, Events: 9, State: []float32{5, 7}})
	_, boot := replay([][2]int32{{1, 0}, {2, 1}})
	store.Put(0, state.Record{StudentID: "boot", ModelVersion: "dkt/1", Partition: -1, Offset: -1, Events: 2, State: boot})
	log := &scriptedLog{polls: [][]kafka.Message{{event(0, 3, "old", 1, 1), event(0, 4, "boot", 3, 0)}}}
	p, progress := newTestPipeline(t, log, store, &hashEngine{}, 0)
	runPipeline(t, p)
	rows := decodeResults(t, log.results)
	fromScratch, _ := replay([][2]int32{{1, 1}})
	afterBoot, _ := replay([][2]int32{{1, 0}, {2, 1}, {3, 0}})
	if len(rows) != 2 {
		t.Fatalf("%d results, want 2", len(rows))
	}
	if rows[0].events != 1 || fmt.Sprint(rows[0].mastery) != fmt.Sprint(fromScratch[0]) {
		t.Errorf("student of another version: %+v, want a fresh start %v", rows[0], fromScratch[0])
	}
	if rows[1].events != 3 || fmt.Sprint(rows[1].mastery) != fmt.Sprint(afterBoot[2]) {
		t.Errorf("bootstrapped student: %+v, want events 3 and %v", rows[1], afterBoot[2])
	}
	if got := progress.VersionResets.Load(); got != 1 {
		t.Errorf("version resets = %d, want 1", got)
	}
}

func TestEventBadInputIsDeadLettered(t *testing.T) {
	noKey := event(0, 1, "a", 1, 1)
	noKey.Key = nil
	otherKey := event(0, 2, "a", 1, 1)
	otherKey.Key = []byte("b")
	big := event(0, 5, "a", 1, 1)
	big.Value = append(big.Value, bytes.Repeat([]byte(" "), 2000)...)
	poll := []kafka.Message{
		noKey, otherKey,
		{Topic: "in", Partition: 0, Offset: 3, Key: []byte("a"), Value: []byte("{")},
		event(0, 4, "a", eventSkills, 1), big, event(0, 6, "a", 2, 1),
	}
	log := &scriptedLog{polls: [][]kafka.Message{poll}}
	p, progress := newTestPipeline(t, log, newMemStore(), &hashEngine{}, 0)
	runPipeline(t, p)
	reasons := map[string]string{}
	for _, m := range log.results {
		if m.Topic == "dlq" {
			reasons[string(m.Headers[kafka.HeaderSourceOffset])] = string(m.Headers[kafka.HeaderReason])
		}
	}
	want := map[string]string{"1": "no key", "2": "is not the student_id", "3": "not a JSON event", "4": "outside [0,4)", "5": "exceeds the 1000-byte limit"}
	for offset, fragment := range want {
		if !strings.Contains(reasons[offset], fragment) {
			t.Errorf("dead letter of offset %s: reason %q, want it to mention %q", offset, reasons[offset], fragment)
		}
	}
	if rows := decodeResults(t, log.results); len(rows) != 1 || rows[0].offset != 6 {
		t.Errorf("results %+v, want only the good event at offset 6", rows)
	}
	if progress.Rejected.Load() != 5 || len(log.ackErrs) != 6 {
		t.Errorf("rejected %d, acked %d; want 5 rejected and all 6 acked", progress.Rejected.Load(), len(log.ackErrs))
	}
}

func TestEventRevokedPartitionsAreNotApplied(t *testing.T) {
	log := &scriptedLog{polls: [][]kafka.Message{
		{event(0, 0, "a", 1, 1), event(1, 0, "b", 2, 1)},
		{event(0, 1, "a", 1, 1)},
	}}
	store := newMemStore()
	p, progress := newTestPipeline(t, log, store, &hashEngine{}, 0, 1)
	p.PartitionsRevoked([]int32{1})
	runPipeline(t, p)
	if rows := decodeResults(t, log.results); len(rows) != 2 || rows[0].srcPart != 0 || rows[1].srcPart != 0 {
		t.Errorf("results %+v; want only partition 0's", rows)
	}
	if !errors.Is(log.ackErrs["1@0"], errNotOwned) || log.ackErrs["0@0"] != nil || log.ackErrs["0@1"] != nil {
		t.Errorf("acks %v; want the revoked partition's event acked with errNotOwned (never committed here), the others with nil", log.ackErrs)
	}
	if progress.NotOwned.Load() != 1 || fmt.Sprint(store.dropped) != "[1]" {
		t.Errorf("not owned = %d, dropped %v; want 1 and [1]", progress.NotOwned.Load(), store.dropped)
	}
}

func TestEventAbortedTransactionKeepsNoState(t *testing.T) {
	log := &scriptedLog{exactly: true, abortNext: true, polls: [][]kafka.Message{
		{event(0, 0, "a", 1, 1)},
		{event(0, 0, "a", 1, 1)}, // redelivered after the abort
	}}
	store := newMemStore()
	p, progress := newTestPipeline(t, log, store, &hashEngine{}, 0)
	runPipeline(t, p)
	rows := decodeResults(t, log.results)
	if len(rows) != 2 || rows[0].events != 1 || rows[1].events != 1 {
		t.Fatalf("results %+v; the redelivered event must be applied again to the state before it", rows)
	}
	if progress.Aborted.Load() != 1 || progress.Skipped.Load() != 0 {
		t.Errorf("aborted %d skipped %d, want 1 and 0", progress.Aborted.Load(), progress.Skipped.Load())
	}
	// The aborted poll's application is not counted: the event was applied
	// once for good.
	if progress.Applied.Load() != 1 {
		t.Errorf("applied = %d, want 1 (the aborted poll's event counts once, when its redelivery commits)", progress.Applied.Load())
	}
	if got := strings.Join(log.trace, ","); got != "results,states,commit(true),results,states,commit(true)" {
		t.Errorf("trace %s", got)
	}
}

// wideEngine has the bundled model's 124 skills; only its sizes are used.
type wideEngine struct{ hashEngine }

func (*wideEngine) NumSkills() int { return 124 }

func TestEventResultsAreSplitUnderTheMessageLimit(t *testing.T) {
	p, err := NewPipeline(Config{ModelVersion: "dkt/1", OutputTopic: "out", DeadLetterTopic: "dlq", ChangelogTopic: "st"},
		&wideEngine{}, newMemStore(), &scriptedLog{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]columnar.EventRow, 5000)
	for i := range rows {
		rows[i] = columnar.EventRow{StudentID: fmt.Sprintf("student-%d", i), EventOffset: int64(i), Events: 1,
			Mastery: make([]float32, 124), SourceTopic: "in", SourceOffset: int64(i)}
	}
	msgs, err := p.resultMessages(rows)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, m := range msgs {
		if len(m.Value) > kafka.DefaultMaxMessageBytes-64<<10 {
			t.Errorf("a result message has %d bytes, over the broker's default limit less room for headers", len(m.Value))
		}
		n, _ := strconv.Atoi(string(m.Headers[kafka.HeaderRows]))
		total += n
	}
	if len(msgs) < 2 || total != len(rows) {
		t.Fatalf("%d rows in %d messages; want all %d rows split over several messages", total, len(msgs), len(rows))
	}
	if got := decodeResultsWide(t, msgs); got != len(rows) {
		t.Fatalf("messages decode to %d rows, want %d", got, len(rows))
	}
}

func decodeResultsWide(t *testing.T, msgs []kafka.Message) int {
	t.Helper()
	n := 0
	for _, m := range msgs {
		r, err := ipc.NewReader(bytes.NewReader(m.Value))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			n += int(r.RecordBatch().NumRows())
		}
		r.Release()
	}
	return n
}

func TestNewEventPipelineChecks(t *testing.T) {
	if _, err := NewPipeline(Config{}, &hashEngine{}, newMemStore(), &scriptedLog{}, nil); err == nil ||
		!strings.Contains(err.Error(), "ModelVersion is empty") || !strings.Contains(err.Error(), "ChangelogTopic is empty") {
		t.Errorf("empty config: %v; want every problem named", err)
	}
	cfg := Config{ModelVersion: "dkt/0", OutputTopic: "o", DeadLetterTopic: "d", ChangelogTopic: "c"}
	if _, err := NewPipeline(cfg, &noStepEngine{}, newMemStore(), &scriptedLog{}, nil); err == nil || !strings.Contains(err.Error(), "no step signature") {
		t.Errorf("model without step: %v; want it refused with the fix", err)
	}
}

type noStepEngine struct{ hashEngine }

func (*noStepEngine) StateSize() int { return 0 }

func TestEventLargeRoundsRunConcurrently(t *testing.T) {
	// 40 students with 2 events each: two rounds of 40 rows, each split over 2 engines.
	var poll []kafka.Message
	want := map[string][][2]int32{}
	for k := range 2 {
		for i := range 40 {
			student := fmt.Sprintf("s%d", i)
			skill, correct := int32((i+k)%eventSkills), int32((i*k)%2)
			poll = append(poll, event(0, int64(len(poll)), student, int(skill), int(correct)))
			want[student] = append(want[student], [2]int32{skill, correct})
		}
	}
	log := &scriptedLog{polls: [][]kafka.Message{poll}, ackErrs: map[string]error{}}
	store, engine := newMemStore(), &hashEngine{}
	p, err := NewPipeline(Config{ModelVersion: "dkt/1", OutputTopic: "out", DeadLetterTopic: "dlq", ChangelogTopic: "st", Engines: 2},
		engine, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.PartitionsAssigned([]int32{0})
	runPipeline(t, p)
	var sizes []int
	for _, r := range engine.runs {
		sizes = append(sizes, len(r))
	}
	if fmt.Sprint(sizes) != "[20 20 20 20]" {
		t.Errorf("Step batch sizes %v, want [20 20 20 20]", sizes)
	}
	rows := decodeResults(t, log.results)
	if len(rows) != len(poll) {
		t.Fatalf("%d results for %d events", len(rows), len(poll))
	}
	for _, r := range rows {
		masteries, _ := replay(want[r.student])
		if fmt.Sprint(r.mastery) != fmt.Sprint(masteries[r.events-1]) {
			t.Errorf("%s after %d events: %v, want %v", r.student, r.events, r.mastery, masteries[r.events-1])
		}
	}
}

// nanEngine is a broken model: row 1 of every run gets a NaN state.
type nanEngine struct{ hashEngine }

func (e *nanEngine) Step(ctx context.Context, skills, correct []int32, st, newState, mastery []float32) error {
	if err := e.hashEngine.Step(ctx, skills, correct, st, newState, mastery); err != nil {
		return err
	}
	if len(skills) > 1 {
		newState[1*2+1] = float32(math.NaN())
	}
	return nil
}

func TestEventNonFiniteStatesAreNeverWritten(t *testing.T) {
	log := &scriptedLog{polls: [][]kafka.Message{{event(0, 7, "a", 1, 1), event(0, 8, "b", 2, 0)}}, ackErrs: map[string]error{}}
	store := newMemStore()
	p, err := NewPipeline(Config{ModelVersion: "dkt/9", OutputTopic: "out", DeadLetterTopic: "dlq", ChangelogTopic: "st"},
		&nanEngine{}, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.PartitionsAssigned([]int32{0})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Run = %v; want the poll failed over the NaN state", err)
	}
	for _, want := range []string{"dkt/9", "in[0] offset 8", "state[1] = NaN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if got := strings.Join(log.trace, ","); got != "ack,ack,commit(false)" {
		t.Errorf("trace %s; want nothing written, the poll ended and its events acked with the error", got)
	}
	if len(store.recs) != 0 {
		t.Errorf("store holds %v; want nothing from the failed poll", store.recs)
	}
	for where, err := range log.ackErrs {
		if err == nil {
			t.Errorf("event %s acked as done", where)
		}
	}
}

// TestEventLogsNameNoStudent: what the pipeline logs and the errors it
// returns (which end in serve's log) carry partitions and offsets, never a
// student id; a poll's skips and unusable states are one line each.
func TestEventLogsNameNoStudent(t *testing.T) {
	var logged bytes.Buffer
	store := newMemStore()
	for _, s := range []string{"alice-secret", "bob-secret", "carol-secret"} {
		store.Put(0, state.Record{StudentID: s, ModelVersion: "dkt/0", Partition: 0, Offset: 100, Events: 9, State: []float32{5, 7}})
	}
	store.Put(1, state.Record{StudentID: "dave-secret", ModelVersion: "dkt/1", Partition: 1, Offset: 20, Events: 3, State: []float32{3, 1}})
	log := &scriptedLog{polls: [][]kafka.Message{{
		event(0, 3, "alice-secret", 1, 1), event(0, 4, "bob-secret", 3, 0), event(0, 5, "carol-secret", 0, 0),
		event(1, 18, "dave-secret", 1, 1), event(1, 20, "dave-secret", 1, 1), event(1, 21, "dave-secret", 2, 0),
	}}, ackErrs: map[string]error{}}
	progress := new(Progress)
	p, err := NewPipeline(Config{ModelVersion: "dkt/1", OutputTopic: "out", DeadLetterTopic: "dlq", ChangelogTopic: "st",
		Logger: slog.New(slog.NewTextHandler(&logged, nil))}, &hashEngine{}, store, log, progress)
	if err != nil {
		t.Fatal(err)
	}
	p.PartitionsAssigned([]int32{0, 1})
	runPipeline(t, p)
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2 (one for the skips, one for the version resets):\n%s", len(lines), logged.String())
	}
	for _, want := range []string{"skipped=2", "partition 1 offsets 18..20 (2)", "students=3", `partition 0: 3 of \"dkt/0, 2 floats\"`, "model_version=dkt/1"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logged.String())
		}
	}
	if strings.Contains(logged.String(), "secret") {
		t.Errorf("log names a student:\n%s", logged.String())
	}
	if progress.Skipped.Load() != 2 || progress.VersionResets.Load() != 3 || progress.Applied.Load() != 4 {
		t.Errorf("skipped %d, resets %d, applied %d; want 2, 3, 4", progress.Skipped.Load(), progress.VersionResets.Load(), progress.Applied.Load())
	}

	// A store that cannot read a state back: the error names where, not whom.
	store.getErr = errors.New("changelog unreachable")
	log = &scriptedLog{polls: [][]kafka.Message{{event(1, 22, "dave-secret", 1, 1)}}, ackErrs: map[string]error{}}
	p, err = NewPipeline(Config{ModelVersion: "dkt/1", OutputTopic: "out", DeadLetterTopic: "dlq", ChangelogTopic: "st"},
		&hashEngine{}, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.PartitionsAssigned([]int32{1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "in[1] offset 22") || strings.Contains(err.Error(), "secret") {
		t.Errorf("Run = %v; want an error naming partition 1 offset 22 and no student", err)
	}
}
