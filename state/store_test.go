package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// changelogLog is an in-memory stand-in for the changelog topic, for the
// Store's logic only (store_kafka_test.go runs it against the broker): it
// appends encoded records per partition and serves them by offset.
type changelogLog struct {
	mu    sync.Mutex
	parts map[int32][][2][]byte // partition → offset → key, value
	calls int
	fail  error
}

func newChangelogLog() *changelogLog { return &changelogLog{parts: map[int32][][2][]byte{}} }

func (l *changelogLog) append(partition int32, r Record) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.parts[partition] = append(l.parts[partition], [2][]byte{[]byte(r.StudentID), r.Encode()})
	return int64(len(l.parts[partition]) - 1)
}

func (l *changelogLog) Fetch(_ context.Context, partition int32, offset int64) ([]byte, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.fail != nil {
		return nil, nil, l.fail
	}
	recs := l.parts[partition]
	if offset < 0 || offset >= int64(len(recs)) {
		return nil, nil, fmt.Errorf("no record at %d[%d]", partition, offset)
	}
	return recs[offset][0], recs[offset][1], nil
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func rec(student string, offset int64) Record {
	return Record{StudentID: student, ModelVersion: "dkt/1", Partition: 0, Offset: offset, Events: offset + 1, State: []float32{float32(offset), 1}}
}

func newTestStore(t *testing.T, max int, idle time.Duration, log *changelogLog, c *clock) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{MaxStudents: max, Idle: idle, Fetch: log, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// putDurable applies r as the pipeline does: Put, write the changelog, Durable.
func putDurable(s *Store, log *changelogLog, partition int32, r Record) int64 {
	s.Put(partition, r)
	off := log.append(partition, r)
	s.Durable(partition, r.StudentID, off, r.Offset)
	return off
}

func mustGet(t *testing.T, s *Store, partition int32, student string) Record {
	t.Helper()
	r, ok, err := s.Get(context.Background(), partition, student)
	if err != nil || !ok {
		t.Fatalf("Get(%d, %q) = ok %t, %v; want its state", partition, student, ok, err)
	}
	return r
}

func TestNewStoreValidates(t *testing.T) {
	log := newChangelogLog()
	for _, tc := range []struct {
		name string
		cfg  StoreConfig
		want []string
	}{
		{"valid", StoreConfig{MaxStudents: 1, Fetch: log}, nil},
		{"everything wrong at once", StoreConfig{MaxStudents: 0, Idle: -time.Second}, []string{"MaxStudents is 0", "Idle is -1s", "Fetch is nil"}},
		{"negative bound", StoreConfig{MaxStudents: -5, Fetch: log}, []string{"MaxStudents is -5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewStore(tc.cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("NewStore = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewStore = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestStoreBoundEvictsOnlyDurableLeastRecentlyUsed: pending states are
// never evicted, whatever the bound; durable ones go least recently used
// first and come back by offset through the Fetcher.
func TestStoreBoundEvictsOnlyDurableLeastRecentlyUsed(t *testing.T) {
	log, c := newChangelogLog(), newClock()
	s := newTestStore(t, 2, 0, log, c)
	for i, student := range []string{"a", "b", "c", "d"} {
		s.Put(0, rec(student, int64(i)))
	}
	if st := s.Stats(); st.InMemory != 4 || st.Pending != 4 || st.Evictions != 0 {
		t.Fatalf("4 pending states over a bound of 2: %+v; want all 4 kept, none evicted", st)
	}

	// Durable in order a, b, c, d: each one over the bound evicts the
	// least recently used durable state.
	offsets := map[string]int64{}
	for i, student := range []string{"a", "b", "c", "d"} {
		r := rec(student, int64(i))
		offsets[student] = log.append(0, r)
		s.Durable(0, student, offsets[student], r.Offset)
	}
	if st := s.Stats(); st.InMemory != 2 || st.Pending != 0 || st.Evicted != 2 || st.Evictions != 2 {
		t.Fatalf("after Durable: %+v; want 2 in memory, 2 evicted", st)
	}
	// a and b were the least recently used; reading a back evicts c.
	if got := mustGet(t, s, 0, "a"); got.Offset != 0 || !slices.Equal(got.State, rec("a", 0).State) {
		t.Fatalf("read back %+v, want a's state", got)
	}
	if st := s.Stats(); st.Fetches != 1 || log.calls != 1 || st.InMemory != 2 {
		t.Fatalf("after reading a back: %+v (fetcher calls %d); want one fetch, still 2 in memory", st, log.calls)
	}
	mustGet(t, s, 0, "d") // in memory: no fetch
	mustGet(t, s, 0, "a") // in memory again: no fetch
	if log.calls != 1 {
		t.Fatalf("fetcher called %d times; states in memory must not be fetched", log.calls)
	}
	mustGet(t, s, 0, "c") // evicted by a's return: fetched, and evicts d (older use than a)
	if log.calls != 2 {
		t.Fatalf("fetcher called %d times, want 2 (c was evicted when a came back)", log.calls)
	}
	mustGet(t, s, 0, "a")
	if log.calls != 2 {
		t.Fatal("a was evicted although d was used less recently")
	}
	if _, ok, err := s.Get(context.Background(), 0, "zed"); ok || err != nil {
		t.Fatalf("Get of an unknown student = ok %t, %v; want not found", ok, err)
	}
}

// TestStoreDurableMatchesTheAppliedOffset: an acknowledgement for an older
// state does not make a newer pending one durable (it could be evicted and
// lost), while the acknowledgement of the state in memory does.
func TestStoreDurableMatchesTheAppliedOffset(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ackApplied  int64 // appliedOffset passed to Durable for the state at offset 5
		wantPending int
	}{
		{"ack of the state in memory", 7, 0},
		{"ack of an older state", 5, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, c := newChangelogLog(), newClock()
			s := newTestStore(t, 1, 0, log, c)
			s.Put(0, rec("a", 5))
			old := log.append(0, rec("a", 5))
			s.Put(0, rec("a", 7))
			newer := log.append(0, rec("a", 7))
			cl := old
			if tc.ackApplied == 7 {
				cl = newer
			}
			s.Durable(0, "a", cl, tc.ackApplied)
			if st := s.Stats(); st.Pending != tc.wantPending {
				t.Fatalf("Pending = %d, want %d", st.Pending, tc.wantPending)
			}
			// A second student over the bound of 1 evicts a only if a is
			// durable (then a is read back); a pending a stays in memory.
			putDurable(s, log, 0, rec("b", 1))
			if got := mustGet(t, s, 0, "a"); got.Offset != 7 {
				t.Fatalf("a's state has offset %d, want the latest, 7", got.Offset)
			}
			if fetched, wantFetched := log.calls == 1, tc.wantPending == 0; fetched != wantFetched {
				t.Fatalf("a read back from the changelog: %t, want %t (only a durable state may be evicted)", fetched, wantFetched)
			}
		})
	}
}

func TestStoreIdleEviction(t *testing.T) {
	log, c := newChangelogLog(), newClock()
	s := newTestStore(t, 100, time.Minute, log, c)
	putDurable(s, log, 0, rec("old", 1))
	s.Put(0, rec("pending", 2)) // idle too, but not durable: kept
	c.advance(30 * time.Second)
	putDurable(s, log, 1, rec("recent", 3))
	c.advance(40 * time.Second) // old: 70s idle, recent: 40s
	if n := s.EvictIdle(); n != 1 {
		t.Fatalf("EvictIdle = %d, want 1 (only the durable state idle over a minute)", n)
	}
	if st := s.Stats(); st.InMemory != 2 || st.Evicted != 1 || st.Pending != 1 {
		t.Fatalf("stats %+v; want old evicted, recent and pending kept", st)
	}
	if got := mustGet(t, s, 0, "old"); got.Offset != 1 || s.Stats().Fetches != 1 {
		t.Fatalf("old read back as %+v (fetches %d); want it fetched from the changelog", got, s.Stats().Fetches)
	}
	// Use keeps a state in memory: recent was used just now.
	c.advance(59 * time.Second)
	mustGet(t, s, 1, "recent")
	c.advance(59 * time.Second)
	if n := s.EvictIdle(); n != 1 { // "old" (fetched 118s ago) goes, "recent" (59s) stays
		t.Fatalf("EvictIdle = %d, want 1", n)
	}
	if log.calls != 1 {
		t.Fatal("unexpected fetches")
	}
	mustGet(t, s, 1, "recent")
	if log.calls != 1 {
		t.Fatal("a recently used state was evicted")
	}
}

func TestStoreRestore(t *testing.T) {
	log, c := newChangelogLog(), newClock()
	s := newTestStore(t, 2, 0, log, c)
	// The changelog as a restore reads it: overwrites, a tombstone, a bad
	// record.
	type raw struct {
		key, value string
		wantErr    error
	}
	entries := []raw{
		{"a", string(rec("a", 1).Encode()), nil},
		{"b", string(rec("b", 2).Encode()), nil},
		{"a", string(rec("a", 3).Encode()), nil},
		{"c", string(rec("c", 4).Encode()), nil},
		{"b", "", nil}, // tombstone: b deleted
		{"d", string(rec("d", 6).Encode()), nil},
		{"e", "not a state", ErrBadRecord},
	}
	for off, e := range entries {
		err := s.RestoreValue(2, []byte(e.key), []byte(e.value), int64(off))
		if !errors.Is(err, e.wantErr) || (e.wantErr == nil) != (err == nil) {
			t.Fatalf("RestoreValue(%q at %d) = %v, want %v", e.key, off, err, e.wantErr)
		}
		log.parts[2] = append(log.parts[2], [2][]byte{[]byte(e.key), []byte(e.value)})
	}
	st := s.Stats()
	if st.Restored != 5 || st.InMemory != 2 || st.Evicted != 1 || st.Pending != 0 {
		t.Fatalf("stats after restore %+v; want 5 restored, 2 in memory (bound), a evicted, b gone", st)
	}
	if _, ok, _ := s.Get(context.Background(), 2, "b"); ok {
		t.Fatal("b was deleted by a tombstone but Get found it")
	}
	if got := mustGet(t, s, 2, "a"); got.Offset != 3 {
		t.Fatalf("a restored at offset %d, want its latest record (3)", got.Offset)
	}
	if got := mustGet(t, s, 2, "d"); got.Offset != 6 {
		t.Fatalf("d = %+v", got)
	}
}

func TestStoreDropPartition(t *testing.T) {
	log, c := newChangelogLog(), newClock()
	s := newTestStore(t, 1, 0, log, c)
	putDurable(s, log, 0, rec("a", 1))
	putDurable(s, log, 0, rec("b", 2)) // evicts a
	s.Put(0, rec("c", 3))              // pending
	putDurable(s, log, 1, rec("x", 1))
	s.DropPartition(0)
	for _, student := range []string{"a", "b", "c"} {
		if _, ok, err := s.Get(context.Background(), 0, student); ok || err != nil {
			t.Fatalf("Get(0, %q) after DropPartition = ok %t, %v; want nothing", student, ok, err)
		}
	}
	s.Durable(0, "c", 9, 3) // late ack of a dropped partition: ignored
	// x may be in memory or evicted (the bound of 1 counted c while it was
	// pending); either way it is the only student left.
	if st := s.Stats(); st.InMemory+st.Evicted != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v; want only partition 1's x", st)
	}
	mustGet(t, s, 1, "x")
}

func TestStoreFetchFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fail    error
		replace Record // written where the evicted state was, when fail is nil
		want    string
	}{
		{"fetcher error", errors.New("broker down"), Record{}, "broker down"},
		{"another student's record", nil, rec("mallory", 1), "holds the state of another student"},
		{"undecodable record", nil, Record{StudentID: "a"}, "bad changelog record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, c := newChangelogLog(), newClock()
			s := newTestStore(t, 1, 0, log, c)
			putDurable(s, log, 0, rec("a", 1))
			putDurable(s, log, 0, rec("b", 2)) // evicts a
			log.fail = tc.fail
			if tc.fail == nil {
				value := tc.replace.Encode()
				if tc.replace.State == nil {
					value = []byte("garbage")
				}
				log.parts[0][0] = [2][]byte{[]byte(tc.replace.StudentID), value}
			}
			_, ok, err := s.Get(context.Background(), 0, "a")
			// The error ends in the worker's log: it names where, never whom.
			if err == nil || ok || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "changelog partition 0 offset 0") ||
				strings.Contains(err.Error(), `"a"`) || strings.Contains(err.Error(), "mallory") {
				t.Fatalf("Get = ok %t, %v; want an error naming partition 0 offset 0 and %q, and no student", ok, err, tc.want)
			}
			if st := s.Stats(); st.FetchErrors != 1 || st.Evicted != 1 {
				t.Fatalf("stats %+v; want 1 fetch error and a still evicted (a retry can succeed)", st)
			}
		})
	}
}

// TestStoreConcurrentUse runs the pipeline's calls against rebalance-style
// calls under -race; every state read must be one that was written.
func TestStoreConcurrentUse(t *testing.T) {
	log, c := newChangelogLog(), newClock()
	s, err := NewStore(StoreConfig{MaxStudents: 8, Fetch: log, Now: func() time.Time { return c.t }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			partition := int32(w % 2)
			for i := range 2000 {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				student := fmt.Sprintf("w%d-s%d", w, i%20)
				r, ok, err := s.Get(ctx, partition, student)
				if err != nil {
					continue // dropped under us: the record at the offset may belong to a dropped epoch
				}
				if ok && (r.StudentID != student || r.State[0] != float32(r.Offset)) {
					errs <- fmt.Errorf("Get(%q) returned %+v", student, r)
					return
				}
				putDurable(s, log, partition, Record{StudentID: student, ModelVersion: "dkt/1", Partition: partition, Offset: int64(i), State: []float32{float32(i)}})
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			s.DropPartition(1)
			s.EvictIdle()
			_ = s.Stats()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pending != 0 || st.InMemory > 8 {
		t.Fatalf("stats %+v; want every state durable and at most 8 in memory", st)
	}
}
