package storage

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrLocked is wrapped by TryLock when another holder has the lease.
	ErrLocked = errors.New("locked by another holder")
	// ErrLockLost is wrapped by Extend and Unlock when the lease expired
	// and may now belong to someone else.
	ErrLockLost = errors.New("lock lost")
)

// Locker hands out named, expiring leases, so that replicas sharing a
// store do not ingest the same digest twice, and tells waiters when one is
// released. Every backend provides one: without it replicas silently lose
// their de-duplication. A lease is an optimisation, never a safety
// property: the blob writer's verification and the verdict store's atomic
// writes hold even if two holders overlap.
type Locker interface {
	// TryLock takes the lease key for ttl, or returns an error wrapping
	// ErrLocked at once if someone else holds it.
	TryLock(ctx context.Context, key string, ttl time.Duration) (Lease, error)
	LeaseWatcher
}

// Lease is a held lock.
type Lease interface {
	// Extend pushes the expiry to ttl from now.
	Extend(ctx context.Context, ttl time.Duration) error
	// Unlock releases the lease if it is still held by this holder.
	Unlock(ctx context.Context) error
}

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
