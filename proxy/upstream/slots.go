package upstream

import (
	"context"
	"sync/atomic"
)

// slots caps the requests open at once to one registry. Docker Hub and
// corporate registries throttle or refuse clients that open too many
// connections; pullgate queues instead, so a burst of cold pulls waits its
// turn rather than failing (a failure would send clients around pullgate).
type slots struct {
	sem     chan struct{}
	waiting atomic.Int64
}

func newSlots(n int) *slots { return &slots{sem: make(chan struct{}, n)} }

// acquire waits for a free slot until ctx ends; release gives it back and
// may be called once. A nil *slots has no cap.
func (s *slots) acquire(ctx context.Context) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.waiting.Add(1)
		select {
		case s.sem <- struct{}{}:
			s.waiting.Add(-1)
		case <-ctx.Done():
			s.waiting.Add(-1)
			return nil, context.Cause(ctx)
		}
	}
	return func() { <-s.sem }, nil
}

// Load is how many requests to a registry are open and how many wait for a
// slot, for metrics and the operator's view.
type Load struct {
	InFlight, Waiting, Max int
}

// Load reports the registry's open and queued requests. Max is 0 when
// there is no cap.
func (r *Registry) Load() Load {
	if r.slots == nil {
		return Load{}
	}
	return Load{InFlight: len(r.slots.sem), Waiting: int(r.slots.waiting.Load()), Max: cap(r.slots.sem)}
}
