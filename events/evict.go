package events

import (
	"context"
	"time"

	"github.com/dktscore/dktscore/state"
)

// EvictIdle frees the memory of idle students while no events arrive (the
// store also evicts on each of its calls), until ctx ends.
func EvictIdle(ctx context.Context, store *state.Store, idle time.Duration) {
	t := time.NewTicker(max(idle/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			store.EvictIdle()
		}
	}
}
