package gate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pullgate/pullgate/storage"
)

// Replicas sharing Redis and one object store fetch and scan each blob once
// between them: the ingest takes a lease on the digest in the verdict store
// (Redis SET NX with expiry, renewed while the ingest runs), and a replica
// that finds the lease taken waits for the holder's verdict, woken by the
// holder's release notification. A holder that crashes stops renewing; its
// lease expires and a waiter takes over.

// leasePoll is how often a waiting replica looks for the holder's verdict
// when no release wakes it first (a holder that died releases nothing).
const leasePoll = 500 * time.Millisecond

// claim takes the ingest lease for ref. It returns a release func when this
// replica should ingest, or the verdict another ingest (here or in another
// replica) produced meanwhile: the verdict is read after the lease is
// taken, so an ingest that finished between the caller's look-up and the
// lock is never repeated. waiting is called when another replica holds
// the lease. A waiting replica is woken when the holder
// releases the lease (Redis pub/sub), and polls in case the holder died
// and its lease ran out.
func (g *Gate) claim(ctx context.Context, ref Ref, rulesetID string, waiting func()) (release func(), v storage.Verdict, found bool, err error) {
	locker := g.opts.Locks
	if locker == nil {
		if v, err := g.opts.Verdicts.Verdict(ctx, ref.Digest, rulesetID, ref.Context); err == nil && g.usable(ctx, v) {
			return nil, v, true, nil
		}
		return func() {}, storage.Verdict{}, false, nil
	}
	watcher := g.opts.Releases
	key := "ingest:" + ref.Digest.String() + ":" + string(ref.Context)
	for {
		released, stopWatch := (<-chan struct{})(nil), func() {}
		if watcher != nil {
			released, stopWatch = watcher.WatchRelease(key)
		}
		lease, err := locker.TryLock(ctx, key, g.opts.IngestLease)
		if err == nil {
			stopWatch()
			if v, err := g.opts.Verdicts.Verdict(ctx, ref.Digest, rulesetID, ref.Context); err == nil && g.usable(ctx, v) {
				_ = lease.Unlock(context.WithoutCancel(ctx))
				return nil, v, true, nil
			}
			return g.keepLease(ctx, lease, key), storage.Verdict{}, false, nil
		}
		if !errors.Is(err, storage.ErrLocked) {
			stopWatch()
			return nil, storage.Verdict{}, false, fmt.Errorf("%w: ingest lease for %s: %v", errTransient, ref.Digest, err)
		}
		if v, err := g.opts.Verdicts.Verdict(ctx, ref.Digest, rulesetID, ref.Context); err == nil && g.usable(ctx, v) {
			stopWatch()
			return nil, v, true, nil
		}
		waiting()
		select {
		case <-ctx.Done():
			stopWatch()
			return nil, storage.Verdict{}, false, fmt.Errorf("%w: waiting for another replica's scan of %s: %w", errTransient, ref.Digest, ctx.Err())
		case <-released:
		case <-time.After(leasePoll):
		}
		stopWatch()
	}
}

// keepLease renews the lease until the returned release func is called.
func (g *Gate) keepLease(ctx context.Context, lease storage.Lease, key string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(g.opts.IngestLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := lease.Extend(ctx, g.opts.IngestLease); err != nil {
					// Another replica may now scan the same blob too: a
					// duplicate fetch, never a wrong verdict.
					g.log.Warn("ingest lease lost", "lease", key, "err", err)
					return
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		_ = lease.Unlock(context.WithoutCancel(ctx))
	}
}
