package modelserver

import (
	"container/list"
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// queue holds the rows waiting for the batcher, bounded by limit. A call
// that ends (deadline, cancel) takes its waiting rows out at once: their
// slots are free for other callers and their data is not kept.
type queue struct {
	mu     sync.Mutex
	rows   *list.List // of *row, oldest first
	limit  int
	closed bool
	ready  chan struct{} // one slot: poked when rows arrive
}

func newQueue(limit int) *queue {
	return &queue{rows: list.New(), limit: limit, ready: make(chan struct{}, 1)}
}

// push queues all of rows, or none: RESOURCE_EXHAUSTED when they do not fit,
// UNAVAILABLE once the queue is closed.
func (q *queue) push(rows []*row) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return status.Error(codes.Unavailable, errStopped.Error())
	case q.rows.Len()+len(rows) > q.limit:
		return status.Errorf(codes.ResourceExhausted, "the queue is full (%d sequences waiting, limit %d, --max-queued-sequences); retry later", q.rows.Len(), q.limit)
	}
	for _, r := range rows {
		r.waiting = q.rows.PushBack(r)
	}
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return nil
}

// remove takes out those of rows that still wait.
func (q *queue) remove(rows []*row) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range rows {
		if r.waiting != nil {
			q.rows.Remove(r.waiting)
			r.waiting = nil
		}
	}
}

// pop waits, bounded by ctx, for the oldest row.
func (q *queue) pop(ctx context.Context) (*row, error) {
	for {
		q.mu.Lock()
		if front := q.rows.Front(); front != nil {
			r := q.rows.Remove(front).(*row)
			r.waiting = nil
			q.mu.Unlock()
			return r, nil
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// close refuses later pushes and returns the rows still waiting.
func (q *queue) close() []*row {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var left []*row
	for e := q.rows.Front(); e != nil; e = e.Next() {
		left = append(left, e.Value.(*row))
	}
	q.rows.Init()
	return left
}

// len is the number of rows waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rows.Len()
}
