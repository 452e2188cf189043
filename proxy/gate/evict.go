package gate

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// The store is a cache: with Options.MaxStoreBytes set, the blobs used
// least recently are removed when it grows past that size, down to nine
// tenths of it. Their verdicts stay; a removed blob that is asked for again
// is fetched from upstream and scanned again, like any blob the store lacks
// (see usable). Manifests are small and are kept.

// usage remembers when each blob was last used: served, or part of an
// image the gate let through.
type usage struct {
	last sync.Map // digest.Digest → time.Time
}

// Touch records that d was used; only a bounded store needs to know.
func (g *Gate) Touch(d digest.Digest) {
	if g.maxStore.Load() > 0 {
		g.usage.last.Store(d, time.Now())
	}
}

func (u *usage) lastUsed(d digest.Digest, stored time.Time) time.Time {
	if v, ok := u.last.Load(d); ok && v.(time.Time).After(stored) {
		return v.(time.Time)
	}
	return stored
}

// SetMaxStoreBytes changes the bound Evict keeps the store within; 0
// leaves it unbounded.
func (g *Gate) SetMaxStoreBytes(n int64) { g.maxStore.Store(n) }

// EvictReport says what one pass of Evict did.
type EvictReport struct {
	StoreBytes   int64 `json:"store_bytes"`   // before the pass
	Evicted      int   `json:"evicted"`       // blobs removed
	EvictedBytes int64 `json:"evicted_bytes"` // their bytes
}

// Evict keeps the store within Options.MaxStoreBytes, removing the blobs
// used least recently; blobs being ingested are left alone.
func (g *Gate) Evict(ctx context.Context) (EvictReport, error) {
	var rep EvictReport
	if g.maxStore.Load() <= 0 {
		return rep, nil
	}
	infos, err := g.opts.Blobs.Usage(ctx)
	if err != nil {
		return rep, err
	}
	for _, in := range infos {
		rep.StoreBytes += in.Size
	}
	if rep.StoreBytes <= g.maxStore.Load() {
		return rep, nil
	}
	sort.Slice(infos, func(i, j int) bool {
		return g.usage.lastUsed(infos[i].Digest, infos[i].Stored).Before(g.usage.lastUsed(infos[j].Digest, infos[j].Stored))
	})
	busy := map[digest.Digest]bool{}
	for _, f := range g.flights.list() {
		busy[f.Digest] = true
	}
	total, target := rep.StoreBytes, g.maxStore.Load()/10*9
	for _, in := range infos {
		if total <= target {
			break
		}
		if busy[in.Digest] {
			continue
		}
		if err := g.opts.Blobs.Delete(ctx, in.Digest); err != nil {
			return rep, err
		}
		g.usage.last.Delete(in.Digest)
		total -= in.Size
		rep.Evicted++
		rep.EvictedBytes += in.Size
	}
	g.metrics.Evicted(rep.Evicted, rep.EvictedBytes)
	g.log.Info("store kept within its size", "store_bytes", rep.StoreBytes, "max_bytes", g.maxStore.Load(),
		"evicted", rep.Evicted, "evicted_bytes", rep.EvictedBytes)
	return rep, nil
}
