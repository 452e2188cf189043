package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrBusy says that every connection slot to a registry stayed taken for
// as long as a request may wait for one (Config.SlotWait). The caller
// answers its client "too many requests, retry later" instead of leaving
// it without an answer.
var ErrBusy = errors.New("every connection slot to the registry is taken")

// DefaultSlotWait bounds the wait for a connection slot (Config.SlotWait).
// It is below the gate's default hold (25 s), so a client held for a
// manifest gets its answer inside the hold even when the wait comes first.
const DefaultSlotWait = 10 * time.Second

// slots caps the requests open at once to one registry. Docker Hub and
// corporate registries throttle or refuse clients that open too many
// connections; pullgate queues instead, so a burst of cold pulls waits its
// turn rather than failing (a failure would send clients around pullgate).
// The wait is bounded: stalled bodies can hold every slot, and a request
// must end in an answer.
type slots struct {
	sem     chan struct{}
	waiting atomic.Int64
	maxWait time.Duration // 0: as long as the context allows
}

func newSlots(n int, maxWait time.Duration) *slots {
	return &slots{sem: make(chan struct{}, n), maxWait: maxWait}
}

// acquire waits for a free slot until ctx ends or maxWait passes (then the
// error is ErrBusy); release gives it back and may be called once. A nil
// *slots has no cap.
func (s *slots) acquire(ctx context.Context) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.waiting.Add(1)
		defer s.waiting.Add(-1)
		var expired <-chan time.Time
		if s.maxWait > 0 {
			t := time.NewTimer(s.maxWait)
			defer t.Stop()
			expired = t.C
		}
		select {
		case s.sem <- struct{}{}:
		case <-expired:
			return nil, fmt.Errorf("%w: %d requests open, none ended within %s", ErrBusy, cap(s.sem), s.maxWait)
		case <-ctx.Done():
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
