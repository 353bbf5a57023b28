package state

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Fetcher reads one changelog record by partition and offset
// (kafka.Changelog implements it). The Store uses it to read back the state
// of a student it evicted from memory.
type Fetcher interface {
	Fetch(ctx context.Context, partition int32, changelogOffset int64) (key, value []byte, err error)
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// MaxStudents bounds the states held in memory over all partitions.
	// Going over it evicts the least recently used DURABLE states (their
	// changelog offset is kept, 8 bytes plus the student id, so Get can read
	// them back). States whose changelog write is not acknowledged yet are
	// never evicted, so memory can exceed the bound by the states of the
	// work in flight. A state costs about 4·StateSize bytes (1.6 KB for the
	// bundled model) plus the map and list entries.
	MaxStudents int
	// Idle evicts durable states not used for this long, bound or not;
	// 0 means only MaxStudents evicts. Eviction happens on the Store's own
	// calls (and EvictIdle), so an idle worker keeps its memory until its
	// next call.
	Idle time.Duration
	// Fetch reads an evicted student's record back from the changelog.
	Fetch Fetcher
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// ErrInvalidConfig is wrapped by NewStore's configuration errors.
var ErrInvalidConfig = errors.New("state: invalid store config")

func (c StoreConfig) validate() error {
	var ps []error
	if c.MaxStudents < 1 {
		ps = append(ps, fmt.Errorf("MaxStudents is %d: set how many student states to hold in memory (at least 1); evicted ones are read back from the changelog", c.MaxStudents))
	}
	if c.Idle < 0 {
		ps = append(ps, fmt.Errorf("Idle is %v: use 0 (no idle eviction) or a positive duration", c.Idle))
	}
	if c.Fetch == nil {
		ps = append(ps, errors.New("Fetch is nil: pass the changelog reader (kafka.Changelog) so evicted states can be read back"))
	}
	if len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(ps...))
}

// StoreStats are the Store's gauges and counters; the pipeline exports them.
type StoreStats struct {
	InMemory    int   // states held in memory (durable and pending)
	Pending     int   // of those, states whose changelog write is not acknowledged yet
	Evicted     int   // students held only as a changelog offset
	Evictions   int64 // states evicted so far (over MaxStudents or Idle)
	Fetches     int64 // evicted states read back through the Fetcher
	FetchErrors int64 // failed read-backs
	Restored    int64 // changelog records applied by Restore/RestoreValue
}

// Store holds the carried state of the students of the partitions this
// worker owns: in memory, bounded, and backed by the changelog.
//
// # How the event pipeline uses it
//
//	on assignment of input partition p (kafka ConsumerConfig.OnAssigned):
//	    DropPartition(p)                      // clears what late work may have left
//	    changelog.Restore(ctx, p, func(k, v, off) error { return store.RestoreValue(p, k, v, off) })
//	per poll (events.Pipeline):
//	    rec, ok, err := Get(ctx, p, student)  // memory, else read back by offset
//	    ... step the poll's events on a copy; a student's later events in the poll build on the copy ...
//	    write results, then the changelog records (acked; their offsets come back)
//	    commit (exactly-once: the transaction with the input offsets)
//	    then, per student: Put(p, newRecord); Durable(p, student, changelogOffset, newRecord.Offset)
//	    then mark the input offsets (at-least-once)
//	a poll that fails or aborts before its commit touches nothing here: the
//	    redelivered events find the states they were first applied to
//	on revoke or loss of p (kafka ConsumerConfig.OnRevoked):
//	    DropPartition(p)
//
// So the pipeline's states are pending (Put, not yet Durable) only for the
// moment between the two calls. The Store still keeps the distinction for
// any caller that Puts before the changelog write is acknowledged: pending
// states are never evicted, since the changelog does not have them and
// evicting would lose them. A durable state's changelog offset is
// remembered when it is evicted, and Get reads it back through the Fetcher,
// so memory holds at most MaxStudents durable states whatever the number of
// students.
//
// Records returned by Get share their State slice with the Store: read it,
// never modify it; Put a new Record instead.
//
// Safe for concurrent use: the pipeline goroutine and the rebalance hooks
// (kgo's group goroutine) call it at the same time. Get releases the lock
// while it reads from the changelog.
type Store struct {
	cfg StoreConfig
	now func() time.Time

	mu    sync.Mutex
	parts map[int32]*partitionStates
	lru   *list.List // of *entry: the durable states in memory, most recently used first
	stats StoreStats // counters only; gauges are computed in Stats
}

type partitionStates struct {
	live    map[string]*entry
	evicted map[string]int64 // student → changelog offset of its latest durable state
}

type entry struct {
	partition int32
	rec       Record
	durable   bool          // rec is in the changelog (acknowledged, or committed under EOS)
	changelog int64         // changelog offset of the student's latest durable state; -1: none yet
	lastUsed  time.Time     // for Idle
	elem      *list.Element // in Store.lru while durable
}

// NewStore validates cfg and returns an empty store.
func NewStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{cfg: cfg, now: now, parts: make(map[int32]*partitionStates), lru: list.New()}, nil
}

// Get returns the state of student in input partition partition: from
// memory, or, if it was evicted, read back from the changelog through the
// Fetcher (and held in memory again). ok is false for a student this store
// has no state for: no event of it was applied in this partition and none was
// restored. An error means the state exists but could not be read back; the
// caller must not treat the student as new (that would start its history
// over), but fail or retry the work.
func (s *Store) Get(ctx context.Context, partition int32, student string) (Record, bool, error) {
	s.mu.Lock()
	ps := s.parts[partition]
	if ps == nil {
		s.mu.Unlock()
		return Record{}, false, nil
	}
	if e := ps.live[student]; e != nil {
		s.touch(e)
		rec := e.rec
		s.mu.Unlock()
		return rec, true, nil
	}
	offset, ok := ps.evicted[student]
	s.mu.Unlock()
	if !ok {
		return Record{}, false, nil
	}

	rec, err := s.fetch(ctx, partition, student, offset)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.stats.FetchErrors++
		return Record{}, false, err
	}
	s.stats.Fetches++
	// While unlocked, a rebalance may have dropped or restored the partition,
	// or a restore replaced the student: then what memory holds now wins,
	// and the fetched record is returned without being kept.
	if cur := s.parts[partition]; cur != ps {
		return rec, true, nil
	}
	if e := ps.live[student]; e != nil {
		s.touch(e)
		return e.rec, true, nil
	}
	if off, ok := ps.evicted[student]; !ok || off != offset {
		return rec, true, nil
	}
	delete(ps.evicted, student)
	e := &entry{partition: partition, rec: rec, changelog: offset}
	ps.live[student] = e
	s.markDurable(e)
	s.evictOverflow()
	return rec, true, nil
}

// fetch reads student's record at offset and checks it is the student's.
// Its errors name the partition and offset, not the student: they end in
// the worker's log, and student ids are kept out of logs.
func (s *Store) fetch(ctx context.Context, partition int32, student string, offset int64) (Record, error) {
	key, value, err := s.cfg.Fetch.Fetch(ctx, partition, offset)
	if err != nil {
		return Record{}, fmt.Errorf("state: reading back an evicted state from changelog partition %d offset %d: %w", partition, offset, err)
	}
	rec, err := DecodeRecord(key, value)
	if err != nil {
		return Record{}, fmt.Errorf("state: the evicted state at changelog partition %d offset %d: %w", partition, offset, err)
	}
	if rec.StudentID != student {
		return Record{}, fmt.Errorf("state: changelog partition %d offset %d holds the state of another student than the one evicted from there: is another writer producing to the changelog? %w",
			partition, offset, ErrBadRecord)
	}
	return rec, nil
}

// Put holds r as student r.StudentID's new state at once, so the student's
// next event (in this poll or the next) builds on it. It stays pending, and
// is never evicted, until Durable reports its changelog write.
func (s *Store) Put(partition int32, r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.partition(partition)
	e := ps.live[r.StudentID]
	if e == nil {
		e = &entry{partition: partition, changelog: -1}
		if off, ok := ps.evicted[r.StudentID]; ok {
			e.changelog = off
			delete(ps.evicted, r.StudentID)
		}
		ps.live[r.StudentID] = e
	}
	if e.durable {
		s.lru.Remove(e.elem)
		e.elem, e.durable = nil, false
	}
	e.rec = r
	e.lastUsed = s.now()
	s.evictOverflow()
}

// Durable reports that the changelog write of student's state whose last
// applied input offset is appliedOffset was acknowledged (under exactly-once:
// that its transaction committed) at changelogOffset. If the student's
// state in memory is still that one, it becomes durable and may be evicted;
// if a newer state was Put meanwhile, that one stays pending, and
// changelogOffset is remembered as the student's latest durable state. A
// student that is not in memory (its partition was dropped) is ignored.
func (s *Store) Durable(partition int32, student string, changelogOffset int64, appliedOffset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[partition]
	if ps == nil || changelogOffset < 0 {
		return // a negative offset names no record: keep the state pending
	}
	e := ps.live[student]
	if e == nil {
		return
	}
	if changelogOffset > e.changelog {
		e.changelog = changelogOffset
	}
	if !e.durable && e.rec.Offset == appliedOffset {
		e.lastUsed = s.now()
		s.markDurable(e)
	}
	s.evictOverflow()
}

// Restore applies one changelog record read while restoring partition:
// records come in offset order, so a later record of a student replaces an
// earlier one. Restored states are durable (the changelog has them).
func (s *Store) Restore(partition int32, r Record, changelogOffset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.partition(partition)
	delete(ps.evicted, r.StudentID)
	e := ps.live[r.StudentID]
	if e == nil {
		e = &entry{partition: partition}
		ps.live[r.StudentID] = e
	}
	e.rec = r
	e.changelog = changelogOffset
	e.lastUsed = s.now()
	if e.durable {
		s.lru.MoveToFront(e.elem)
	} else {
		s.markDurable(e)
	}
	s.stats.Restored++
	s.evictOverflow()
}

// RestoreValue decodes a raw changelog record (key = student_id) and applies
// it like Restore; a tombstone (empty value) removes the student. It fits
// kafka.Changelog.Restore's callback, which adds the record's partition and
// offset to an error. A record that does not decode is returned as an error
// wrapping ErrBadRecord.
func (s *Store) RestoreValue(partition int32, key, value []byte, changelogOffset int64) error {
	r, err := DecodeRecord(key, value)
	switch {
	case errors.Is(err, ErrTombstone):
		s.Forget(partition, string(key))
		return nil
	case err != nil:
		return err
	}
	s.Restore(partition, r, changelogOffset)
	return nil
}

// Forget removes student from partition, in memory and from the evicted
// index: its state was deleted from the changelog.
func (s *Store) Forget(partition int32, student string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[partition]
	if ps == nil {
		return
	}
	delete(ps.evicted, student)
	if e := ps.live[student]; e != nil {
		s.unlink(e)
		delete(ps.live, student)
	}
}

// DropPartition forgets everything about partition: call it when the
// partition is revoked or lost, and again when it is assigned, before
// restoring (work that was in flight at the revoke may have Put states after
// the first call).
func (s *Store) DropPartition(partition int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[partition]
	if ps == nil {
		return
	}
	for _, e := range ps.live {
		s.unlink(e)
	}
	delete(s.parts, partition)
}

// EvictIdle evicts the durable states unused for StoreConfig.Idle and
// returns how many. The Store also does this on each of its calls; call it
// from a ticker to free memory while no events come.
func (s *Store) EvictIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.stats.Evictions
	s.evictOverflow()
	return int(s.stats.Evictions - before)
}

// Stats returns the current gauges and counters.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	for _, ps := range s.parts {
		st.InMemory += len(ps.live)
		st.Evicted += len(ps.evicted)
	}
	st.Pending = st.InMemory - s.lru.Len()
	return st
}

// partition returns partition's states, creating them; s.mu is held.
func (s *Store) partition(partition int32) *partitionStates {
	ps := s.parts[partition]
	if ps == nil {
		ps = &partitionStates{live: make(map[string]*entry), evicted: make(map[string]int64)}
		s.parts[partition] = ps
	}
	return ps
}

// touch marks e used now; s.mu is held.
func (s *Store) touch(e *entry) {
	e.lastUsed = s.now()
	if e.durable {
		s.lru.MoveToFront(e.elem)
	}
}

// markDurable puts e at the front of the eviction order; s.mu is held.
func (s *Store) markDurable(e *entry) {
	e.durable = true
	e.elem = s.lru.PushFront(e)
}

// unlink takes e out of the eviction order; s.mu is held.
func (s *Store) unlink(e *entry) {
	if e.durable {
		s.lru.Remove(e.elem)
		e.elem, e.durable = nil, false
	}
}

// evictOverflow evicts durable states from the least recently used end
// while memory holds more than MaxStudents states, or while the least
// recently used one is idle. The list is in last-use order (every use moves
// an entry to the front), so the idle ones are all at the back. s.mu is held.
func (s *Store) evictOverflow() {
	inMemory := 0
	for _, ps := range s.parts {
		inMemory += len(ps.live)
	}
	idleBefore := time.Time{}
	if s.cfg.Idle > 0 {
		idleBefore = s.now().Add(-s.cfg.Idle)
	}
	for back := s.lru.Back(); back != nil; back = s.lru.Back() {
		e := back.Value.(*entry)
		over := inMemory > s.cfg.MaxStudents
		idle := s.cfg.Idle > 0 && !e.lastUsed.After(idleBefore)
		if !over && !idle {
			return
		}
		s.lru.Remove(back)
		e.elem, e.durable = nil, false
		ps := s.parts[e.partition]
		delete(ps.live, e.rec.StudentID)
		ps.evicted[e.rec.StudentID] = e.changelog
		e.rec = Record{} // let the state go now, not when the entry does
		inMemory--
		s.stats.Evictions++
	}
}
