package storage

import (
	"context"
	"sync"
	"time"
)

// LeaseWatcher tells waiters when a lease is released, so a replica
// waiting on another's ingest is woken at once rather than on its next
// poll. Every Locker is one. A watch is a hint: a holder that dies
// releases nothing, so waiters still poll, less often.
type LeaseWatcher interface {
	// WatchRelease returns a channel closed when key's lease is released
	// by its holder; stop ends the watch. Register before trying the lock,
	// so a release between the two is not missed.
	WatchRelease(key string) (released <-chan struct{}, stop func())
}

var (
	_ LeaseWatcher = (*RedisStore)(nil)
	_ LeaseWatcher = (*BoltStore)(nil)
)

// watchers is the set of channels waiting on each key's release.
type watchers struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

func (w *watchers) add(key string) (chan struct{}, func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[string]map[chan struct{}]struct{})
	}
	if w.m[key] == nil {
		w.m[key] = make(map[chan struct{}]struct{})
	}
	w.m[key][ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if set, ok := w.m[key]; ok {
			if _, ok := set[ch]; ok {
				delete(set, ch)
				close(ch)
			}
			if len(set) == 0 {
				delete(w.m, key)
			}
		}
	}
}

// wake closes (and forgets) every channel waiting on key.
func (w *watchers) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[key] {
		close(ch)
	}
	delete(w.m, key)
}

// The embedded store lives in one process: a release wakes its waiters
// directly.
func (s *BoltStore) WatchRelease(key string) (<-chan struct{}, func()) {
	return s.locks.released.add(key)
}

// redisReleaseChannel carries the keys of released leases to every replica.
const redisReleaseChannel = redisPrefix + "released"

// WatchRelease watches for a release published by any replica on this
// Redis. The store keeps one subscription, started on the first watch.
func (s *RedisStore) WatchRelease(key string) (<-chan struct{}, func()) {
	s.subscribe.Do(func() {
		ps := s.client.Subscribe(context.Background(), redisReleaseChannel)
		// Wait for Redis to confirm, so that a release published from now
		// on is seen (if Redis is away, waiters fall back on polling).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = ps.Receive(ctx)
		cancel()
		s.pubsub = ps
		go func() {
			for msg := range ps.Channel() {
				s.released.wake(msg.Payload)
			}
		}()
	})
	return s.released.add(key)
}

// publishRelease tells every replica that key's lease is free. A lost
// message costs a waiter one poll interval, nothing more.
func (s *RedisStore) publishRelease(ctx context.Context, key string) {
	_ = s.client.Publish(ctx, redisReleaseChannel, key).Err()
}

// closeSubscription ends the release subscription, if any; no new one
// starts after it.
func (s *RedisStore) closeSubscription() {
	s.subscribe.Do(func() {})
	if s.pubsub != nil {
		_ = s.pubsub.Close()
	}
}
