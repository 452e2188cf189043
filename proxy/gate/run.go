package gate

import (
	"context"
	"sync"
	"time"
)

// Run does the server's background work until ctx ends, and returns when
// all of it has stopped:
//
//   - every stored blob without a verdict under the current rules (an
//     upgrade, a rules change while stopped) is rescanned, behind
//     interactive scans, before anyone asks for it;
//   - the store is kept within MaxStoreBytes;
//   - the images in Warm are kept fetched and scanned;
//   - uploads a killed process left behind are removed;
//   - the rules are reloaded in place when their files change or
//     ReloadRules asks, and the store is rescanned under them.
func (g *Gate) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { g.rescanWhenAsked(ctx) })
	if g.opts.Rules.Load != nil {
		wg.Go(func() { g.watchRules(ctx) })
	}
	if g.maxStore.Load() > 0 {
		wg.Go(func() { g.keepWithinSize(ctx) })
	}
	if len(g.opts.Warm.Images) > 0 {
		wg.Go(func() { g.keepWarm(ctx) })
	}
	// Any upload older than one ingest can be no replica's.
	wg.Go(func() { g.opts.Blobs.ReapUploads(ctx, g.opts.IngestTimeout, g.opts.ReapUploadsEvery, g.log) })
	wg.Wait()
}

// rescanWhenAsked rescans the store once at start and again after each
// rules reload; a reload during a rescan asks for one more after it, so
// reloads never stack rescans up and never wait for one.
func (g *Gate) rescanWhenAsked(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.rescans:
			g.rescanLogged(ctx, "rescan done")
		}
	}
}

// askRescan asks rescanWhenAsked for a rescan; one already waiting will do.
func (g *Gate) askRescan() {
	select {
	case g.rescans <- struct{}{}:
	default:
	}
}

// rescanLogged rescans the store and logs what it found under msg.
func (g *Gate) rescanLogged(ctx context.Context, msg string) {
	start := time.Now()
	rep, err := g.Rescan(ctx)
	attrs := []any{"checked", rep.Checked, "scanned", rep.Scanned, "refused", len(rep.Refused), "failed", rep.Failed, "duration", time.Since(start).String()}
	if err != nil {
		g.log.Warn("rescan incomplete", append(attrs, "err", err)...)
		return
	}
	g.log.Info(msg, attrs...)
}

// evictEvery is how often the store is checked against MaxStoreBytes.
const evictEvery = time.Minute

// keepWithinSize evicts the least recently used blobs past MaxStoreBytes,
// at start and then every evictEvery.
func (g *Gate) keepWithinSize(ctx context.Context) {
	t := time.NewTicker(evictEvery)
	defer t.Stop()
	for {
		if _, err := g.Evict(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("keep the store within max_store_bytes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
