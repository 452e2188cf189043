package gate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// Fetching manifests: a tag resolved (a short-lived cache, else an
// upstream HEAD, else the last mapping seen), a manifest read from the
// store or else fetched upstream, verified against its digest, stored and
// linked to the repository upstream confirmed carries it.

// resolve turns the reference into a digest: a digest as it is, a tag from
// the tag cache, else by an upstream HEAD, else (upstream unreachable or
// rate-limited) from the last mapping seen, which is logged.
func (g *Gate) resolve(ctx context.Context, up *upstream.Registry, t Target, accept []string) (upstream.Descriptor, error) {
	if t.Digest != "" {
		return upstream.Descriptor{Digest: t.Digest}, nil
	}
	key := t.Registry + "/" + t.Repo + ":" + t.Ref + "|" + strings.Join(accept, ",")
	if d, ok := g.tags.get(key); ok {
		g.metrics.TagCache(true)
		return d, nil
	}
	g.metrics.TagCache(false)
	d, err := up.Resolve(ctx, t.Repo, t.Ref, accept)
	if err == nil {
		g.tags.put(key, d)
		rec := storage.TagRecord{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, Time: time.Now().UTC()}
		if perr := g.opts.Verdicts.PutTag(ctx, key, rec); perr != nil {
			g.log.Warn("remember tag", "image", t.Image(), "err", perr)
		}
		return d, nil
	}
	if upstream.IsNotFound(err) {
		return d, refusal(UnknownManifest, "pullgate: %s: not found upstream", t.Image())
	}
	if rec, terr := g.opts.Verdicts.Tag(ctx, key); terr == nil {
		g.log.Warn("upstream unavailable; serving last known tag", "image", t.Image(), "digest", rec.Digest.String(),
			"seen", rec.Time, "upstream", up.Name(), "err", err)
		return upstream.Descriptor{Digest: rec.Digest, MediaType: rec.MediaType, Size: rec.Size}, nil
	}
	return d, upstreamFailure(fmt.Sprintf("pullgate: resolve %s", t.Image()), err)
}

// loadManifest returns a manifest's bytes and media type, from the store or
// else from upstream (verified against its digest, then stored).
func (g *Gate) loadManifest(ctx context.Context, up *upstream.Registry, t Target, dgst digest.Digest) ([]byte, string, error) {
	body, mt, err := g.opts.Blobs.Manifest(ctx, dgst)
	if err == nil {
		// The bytes are verified against their digest; the media type
		// recorded beside them is not, so it must agree with them.
		kind, kerr := ManifestKind(body)
		if kerr == nil && kind == mt {
			return body, mt, nil
		}
		g.log.Error("stored manifest's media type does not match its bytes; removed, fetching it again",
			"digest", dgst.String(), "recorded", cut(mt, 100), "kind", kind, "err", kerr)
		if derr := g.opts.Blobs.DeleteManifest(ctx, dgst); derr != nil {
			g.log.Error("remove stored manifest", "digest", dgst.String(), "err", derr)
			return nil, "", storeUnavailable(fmt.Sprintf("read manifest %s", dgst))
		}
		err = storage.ErrNotFound
	}
	if errors.Is(err, storage.ErrDigestMismatch) {
		g.log.Error("stored manifest failed verification; removed, fetching it again", "digest", dgst.String(), "err", err)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		g.log.Error("read stored manifest", "digest", dgst.String(), "err", err)
		return nil, "", storeUnavailable(fmt.Sprintf("read manifest %s", dgst))
	}
	body, _, err = up.Manifest(ctx, t.Repo, dgst, ManifestTypes)
	if err != nil {
		if upstream.IsNotFound(err) {
			return nil, "", refusal(UnknownManifest, "pullgate: %s: not found upstream", t.ImageAt(dgst))
		}
		return nil, "", upstreamFailure(fmt.Sprintf("pullgate: fetch manifest %s", t.ImageAt(dgst)), err)
	}
	mt, err = ManifestKind(body)
	if err != nil {
		return nil, "", refusal(Invalid, "pullgate: %s refused: malformed image manifest or index: %v", t.ImageAt(dgst), err)
	}
	if err := g.opts.Blobs.PutManifest(ctx, dgst, mt, body); err != nil {
		g.log.Error("store manifest", "digest", dgst.String(), "err", err)
		return nil, "", storeUnavailable(fmt.Sprintf("store manifest %s", dgst))
	}
	g.linkManifest(ctx, t, dgst, mt, body)
	return body, mt, nil
}

// tagCache keeps tag→digest mappings for a short time, so a burst of pulls
// of one tag costs one upstream HEAD.
type tagCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]tagEntry
}

type tagEntry struct {
	desc upstream.Descriptor
	at   time.Time
}

// maxTagEntries bounds the cache; when full, expired entries go first, and
// if none has expired the whole cache is dropped (it is only an optimisation).
const maxTagEntries = 10000

func (c *tagCache) get(key string) (upstream.Descriptor, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || time.Since(e.at) > c.ttl {
		return upstream.Descriptor{}, false
	}
	return e.desc, true
}

func (c *tagCache) put(key string, d upstream.Descriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]tagEntry)
	}
	if len(c.m) >= maxTagEntries {
		for k, e := range c.m {
			if time.Since(e.at) > c.ttl {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxTagEntries {
			clear(c.m)
		}
	}
	c.m[key] = tagEntry{desc: d, at: time.Now()}
}
