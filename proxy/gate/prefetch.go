package gate

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
)

// Pulling an index prefetches and pre-scans the platforms the operator
// listed, in the background and behind interactive scans, so that the
// platform a client asks for next is usually decided already.

// prefetchMemory is how long an index stays "prefetched" before a pull of
// it prefetches again (new rules, a store wiped).
const prefetchMemory = 10 * time.Minute

type prefetcher struct {
	mu   sync.Mutex
	seen map[digest.Digest]time.Time
	sem  chan struct{} // bounds concurrent prefetches
}

func (p *prefetcher) claim(d digest.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if at, ok := p.seen[d]; ok && time.Since(at) < prefetchMemory {
		return false
	}
	if p.seen == nil {
		p.seen = make(map[digest.Digest]time.Time)
	}
	for k, at := range p.seen {
		if time.Since(at) >= prefetchMemory {
			delete(p.seen, k)
		}
	}
	p.seen[d] = time.Now()
	return true
}

// platformsOf lists the entries of an index to prefetch: for each wanted
// platform, the first entry that matches it, as a client picks one. At most
// one entry a platform: an index of hundreds of entries for one platform
// must not turn one anonymous request into hundreds upstream.
func platformsOf(body []byte, wanted []string) []ocispec.Descriptor {
	idx, err := ParseIndex(body)
	if err != nil {
		return nil
	}
	var out []ocispec.Descriptor
	for _, w := range wanted {
		m, ok := PickPlatform(idx, w)
		if ok && !slices.ContainsFunc(out, func(e ocispec.Descriptor) bool { return e.Digest == m.Digest }) {
			out = append(out, m)
		}
	}
	return out
}

// Prefetch pre-scans the wanted platforms of an index. It never blocks the
// request that served the index.
func (g *Gate) Prefetch(up *upstream.Registry, t Target, index digest.Digest, body []byte) {
	if len(g.opts.PrefetchPlatforms) == 0 || !g.prefetches.claim(index) {
		return
	}
	entries := platformsOf(body, g.opts.PrefetchPlatforms)
	if len(entries) == 0 {
		return
	}
	go func() {
		g.prefetches.sem <- struct{}{}
		defer func() { <-g.prefetches.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), g.opts.IngestTimeout)
		defer cancel()
		for _, e := range entries {
			g.prefetchImage(ctx, up, t, e.Digest)
		}
	}()
}

func (g *Gate) prefetchImage(ctx context.Context, up *upstream.Registry, t Target, dgst digest.Digest) {
	body, mt, err := g.loadManifest(ctx, up, t, dgst)
	if err != nil {
		g.log.Warn("prefetch", "image", t.ImageAt(dgst), "err", err)
		return
	}
	if !IsImageManifest(mt) {
		return
	}
	d := g.judgeImage(ctx, up, t.Repo, dgst, body, g.opts.IngestTimeout, scanner.Background, false)
	g.log.Info("prefetched", "image", t.ImageAt(dgst), "status", d.Word(), "reason", d.Message)
}
