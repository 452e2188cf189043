package storetest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/storage"
)

// RunLocker is the conformance suite for storage.Locker. open must return a
// new locker with no leases held each call.
func RunLocker(t *testing.T, open func(t *testing.T) storage.Locker) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l storage.Locker)
	}{
		{"Exclusive", testLockExclusive},
		{"Expires", testLockExpires},
		{"Extend", testLockExtend},
		{"Invalid", testLockInvalid},
		{"Race", testLockRace},
		{"WatchRelease", testWatchRelease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

func mustLock(t *testing.T, l storage.Locker, key string, ttl time.Duration) storage.Lease {
	t.Helper()
	lease, err := l.TryLock(ctx(t), key, ttl)
	if err != nil {
		t.Fatalf("TryLock(%s): %v", key, err)
	}
	return lease
}

func wantLocked(t *testing.T, l storage.Locker, key string) {
	t.Helper()
	if _, err := l.TryLock(ctx(t), key, time.Minute); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("TryLock(%s) of a held lease: %v, want ErrLocked", key, err)
	}
}

func testLockExclusive(t *testing.T, l storage.Locker) {
	a := mustLock(t, l, "ingest:sha256:a", time.Minute)
	wantLocked(t, l, "ingest:sha256:a")
	b := mustLock(t, l, "ingest:sha256:b", time.Minute)

	if err := a.Unlock(ctx(t)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := a.Unlock(ctx(t)); !errors.Is(err, storage.ErrLockLost) {
		t.Fatalf("second Unlock: %v, want ErrLockLost", err)
	}
	again := mustLock(t, l, "ingest:sha256:a", time.Minute)
	// The first holder's stale handle must not release the new holder.
	if err := a.Unlock(ctx(t)); !errors.Is(err, storage.ErrLockLost) {
		t.Fatalf("stale Unlock: %v, want ErrLockLost", err)
	}
	wantLocked(t, l, "ingest:sha256:a")
	for _, lease := range []storage.Lease{again, b} {
		if err := lease.Unlock(ctx(t)); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	}
}

// pollLock retries TryLock until it succeeds or the deadline passes.
func pollLock(t *testing.T, l storage.Locker, key string, ttl, timeout time.Duration) storage.Lease {
	t.Helper()
	var lease storage.Lease
	var err error
	testsync.WaitFor(t, timeout, "TryLock("+key+") to succeed", func() bool {
		lease, err = l.TryLock(ctx(t), key, ttl)
		return err == nil || !errors.Is(err, storage.ErrLocked)
	})
	if err != nil {
		t.Fatalf("TryLock(%s): %v", key, err)
	}
	return lease
}

func testLockExpires(t *testing.T, l storage.Locker) {
	old := mustLock(t, l, "expiring", 50*time.Millisecond)
	next := pollLock(t, l, "expiring", time.Minute, 10*time.Second)
	if err := old.Extend(ctx(t), time.Minute); !errors.Is(err, storage.ErrLockLost) {
		t.Fatalf("Extend of an expired lease: %v, want ErrLockLost", err)
	}
	if err := old.Unlock(ctx(t)); !errors.Is(err, storage.ErrLockLost) {
		t.Fatalf("Unlock of an expired lease: %v, want ErrLockLost", err)
	}
	wantLocked(t, l, "expiring")
	if err := next.Unlock(ctx(t)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

func testLockExtend(t *testing.T, l storage.Locker) {
	const short = 100 * time.Millisecond
	start := time.Now()
	lease := mustLock(t, l, "extended", short)
	if err := lease.Extend(ctx(t), time.Minute); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	// Keep asking until well past the original expiry: it must stay held.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < 3*short {
		wantLocked(t, l, "extended")
		<-tick.C
	}
	if err := lease.Unlock(ctx(t)); err != nil {
		t.Fatalf("Unlock after Extend: %v", err)
	}
}

func testLockInvalid(t *testing.T, l storage.Locker) {
	if _, err := l.TryLock(ctx(t), "", time.Minute); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("TryLock with an empty key: %v, want ErrInvalid", err)
	}
	if _, err := l.TryLock(ctx(t), "k", 0); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("TryLock with a zero ttl: %v, want ErrInvalid", err)
	}
}

func testLockRace(t *testing.T, l storage.Locker) {
	const contenders = 16
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.TryLock(ctx(t), "contended", time.Minute)
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, storage.ErrLocked):
				t.Errorf("TryLock: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of %d contenders took the lease, want exactly 1", n, contenders)
	}
}

// testWatchRelease: a waiter watching a lease is woken when its holder
// releases it, and not before; a stopped watch is never woken.
func testWatchRelease(t *testing.T, l storage.Locker) {
	w := l
	key := "watch-" + t.Name()
	lease := mustLock(t, l, key, time.Minute)
	released, stop := w.WatchRelease(key)
	defer stop()
	stopped, stopEarly := w.WatchRelease(key)
	stopEarly()
	other, stopOther := w.WatchRelease(key + "-other")
	defer stopOther()
	select {
	case <-released:
		t.Fatal("woken while the lease is held")
	default:
	}
	if err := lease.Unlock(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("not woken within 5s of the release")
	}
	select {
	case <-other:
		t.Fatal("a watch on another key was woken")
	default:
	}
	// A stopped watch's channel is closed by stop itself; that is all.
	select {
	case <-stopped:
	default:
		t.Fatal("stop did not close the watch")
	}
}
