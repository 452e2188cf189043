package bolt

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/internal/kit"
)

// TryLock takes a lease. Only one process can hold the bbolt file, so the
// leases live in this process's memory.
func (s *Store) TryLock(ctx context.Context, key string, ttl time.Duration) (storage.Lease, error) {
	return s.locks.TryLock(ctx, key, ttl)
}

// WatchRelease: the embedded store lives in one process, so a release
// wakes its waiters directly.
func (s *Store) WatchRelease(key string) (<-chan struct{}, func()) {
	return s.locks.released.Add(key)
}

// localLocker is the embedded store's Locker. A bbolt file has one process
// holding it, so leases only need to be shared inside this process.
type localLocker struct {
	mu       sync.Mutex
	leases   map[string]localLease
	released kit.Watchers
}

type localLease struct {
	token   string
	expires time.Time
}

func (l *localLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (storage.Lease, error) {
	if err := kit.ValidateLock(key, ttl); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if cur, ok := l.leases[key]; ok && now.Before(cur.expires) {
		return nil, fmt.Errorf("lock %s: %w", key, storage.ErrLocked)
	}
	if l.leases == nil {
		l.leases = map[string]localLease{}
	}
	token := kit.NewToken()
	l.leases[key] = localLease{token: token, expires: now.Add(ttl)}
	return &localHeld{l: l, key: key, token: token}, nil
}

type localHeld struct {
	l     *localLocker
	key   string
	token string
}

// held reports whether this holder still has the lease; l.mu must be held.
func (h *localHeld) held(now time.Time) bool {
	cur, ok := h.l.leases[h.key]
	return ok && cur.token == h.token && now.Before(cur.expires)
}

func (h *localHeld) Extend(ctx context.Context, ttl time.Duration) error {
	if err := kit.ValidateLock(h.key, ttl); err != nil {
		return err
	}
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	now := time.Now()
	if !h.held(now) {
		return fmt.Errorf("extend lock %s: %w", h.key, storage.ErrLockLost)
	}
	h.l.leases[h.key] = localLease{token: h.token, expires: now.Add(ttl)}
	return nil
}

func (h *localHeld) Unlock(ctx context.Context) error {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	held := h.held(time.Now())
	if cur, ok := h.l.leases[h.key]; ok && cur.token == h.token {
		delete(h.l.leases, h.key) // expired or not, it was ours
		h.l.released.Wake(h.key)
	}
	if !held {
		return fmt.Errorf("unlock %s: %w", h.key, storage.ErrLockLost)
	}
	return nil
}
