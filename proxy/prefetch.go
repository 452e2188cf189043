package proxy

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/proxy/gate"
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
	idx, err := gate.ParseIndex(body)
	if err != nil {
		return nil
	}
	var out []ocispec.Descriptor
	for _, w := range wanted {
		m, ok := gate.PickPlatform(idx, w)
		if ok && !slices.ContainsFunc(out, func(e ocispec.Descriptor) bool { return e.Digest == m.Digest }) {
			out = append(out, m)
		}
	}
	return out
}

// prefetch pre-scans the wanted platforms of an index. It never blocks the
// request that served the index.
func (s *Server) prefetch(up *upstream.Registry, t target, index digest.Digest, body []byte) {
	if len(s.opts.PrefetchPlatforms) == 0 || !s.prefetches.claim(index) {
		return
	}
	entries := platformsOf(body, s.opts.PrefetchPlatforms)
	if len(entries) == 0 {
		return
	}
	go func() {
		s.prefetches.sem <- struct{}{}
		defer func() { <-s.prefetches.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.IngestTimeout)
		defer cancel()
		for _, e := range entries {
			s.prefetchImage(ctx, up, t, e.Digest)
		}
	}()
}

func (s *Server) prefetchImage(ctx context.Context, up *upstream.Registry, t target, dgst digest.Digest) {
	body, mt, err := s.loadManifest(ctx, up, t, dgst)
	if err != nil {
		s.log.Warn("prefetch", "image", t.imageAt(dgst), "err", err)
		return
	}
	if !gate.IsImageManifest(mt) {
		return
	}
	refs, err := s.blobsOf(body)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	blocked := false
	var mu sync.Mutex
	for _, ref := range refs {
		ref.Prio = scanner.Background
		wg.Go(func() {
			v, err := s.gate.Verdict(ctx, up, t.Repo, ref)
			if err == nil && s.gate.Refuses(v) {
				mu.Lock()
				blocked = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.log.Info("prefetched", "image", t.imageAt(dgst), "blocked", blocked)
}
