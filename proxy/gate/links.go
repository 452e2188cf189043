package gate

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// The store is global (one copy of each digest), but content is served
// only under names upstream confirmed carry it, as distribution's linked
// blob store does: fetching a manifest from upstream under a repository
// links the repository to the manifest and to every blob and child
// manifest it names; fetching a blob links it. A digest asked for under a
// repository with no link is first confirmed with a HEAD upstream. The
// links, read back from digest to repositories, are also the names whose
// policy and overrides the content must pass (admitLinked).

// linkManifest records that upstream confirmed the repository of t carries
// the manifest dgst, and what the manifest names, with the role each blob
// plays in it.
func (g *Gate) linkManifest(ctx context.Context, t Target, dgst digest.Digest, mediaType string, body []byte) {
	name := t.Name()
	// Recorded at once: the embedded store commits writers that come
	// together in one transaction, so a manifest's links cost one commit,
	// not one per blob (the manifest waits for them before it is served).
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { g.putLink(ctx, name, dgst) })
	switch mediaType {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		refs, err := BlobsOf(body, g.opts.MaxManifestLayers)
		if err != nil {
			return // refused by the gate, with the reason
		}
		roles := map[digest.Digest][]storage.Context{}
		var order []digest.Digest
		for _, ref := range refs {
			if _, ok := roles[ref.Digest]; !ok {
				order = append(order, ref.Digest)
			}
			roles[ref.Digest] = append(roles[ref.Digest], ref.Context)
		}
		for _, d := range order {
			wg.Go(func() { g.putLink(ctx, name, d, roles[d]...) })
		}
	}
	// An index's children are not linked here: an index only claims
	// them, and a link must be what upstream confirmed. Each is linked
	// when fetched or confirmed under this name.
}

// putLink records a link. A link that cannot be recorded costs an upstream
// HEAD on the next request under that name, nothing worse, so it is logged
// and the request goes on.
func (g *Gate) putLink(ctx context.Context, name string, dgst digest.Digest, roles ...storage.Context) {
	if err := g.opts.Verdicts.PutLink(ctx, name, dgst, roles...); err != nil {
		g.log.Warn("record repository link", "image", name, "digest", dgst.String(), "err", err)
	}
}

// manifestLinks returns what is known of the manifest dgst, confirming
// first with upstream (a HEAD of the manifest by digest in the repository
// of t) when that repository has no link to it.
func (g *Gate) manifestLinks(ctx context.Context, up *upstream.Registry, t Target, dgst digest.Digest, mediaType string, body []byte) (storage.Links, error) {
	name := t.Name()
	links, err := g.opts.Verdicts.Links(ctx, dgst)
	if err != nil {
		return storage.Links{}, refusal(Unavailable, "pullgate: %s refused: verdict store unavailable: %v", t.ImageAt(dgst), err)
	}
	if links.Has(name) {
		return links, nil
	}
	if up == nil {
		return storage.Links{}, refusal(Unavailable, "pullgate: %s: no upstream to confirm it with", t.ImageAt(dgst))
	}
	if _, err := up.Resolve(ctx, t.Repo, dgst.String(), ManifestTypes); err != nil {
		return storage.Links{}, confirmError(err, UnknownManifest, t.ImageAt(dgst))
	}
	g.linkManifest(ctx, t, dgst, mediaType, body)
	return withRepo(links, name), nil
}

// blobLinks returns what is known of the blob t.Digest, confirming first
// with upstream (a HEAD of the blob in the repository of t) when that
// repository has no link to it.
func (g *Gate) blobLinks(ctx context.Context, up *upstream.Registry, t Target) (storage.Links, error) {
	name := t.Name()
	what := fmt.Sprintf("blob %s of %s", t.Digest, name)
	links, err := g.opts.Verdicts.Links(ctx, t.Digest)
	if err != nil {
		return storage.Links{}, refusal(Unavailable, "pullgate: %s refused: verdict store unavailable: %v", what, err)
	}
	if links.Has(name) {
		return links, nil
	}
	if up == nil {
		return storage.Links{}, refusal(Unavailable, "pullgate: %s: no upstream to confirm it with", what)
	}
	if _, err := up.StatBlob(ctx, t.Repo, t.Digest); err != nil {
		return storage.Links{}, confirmError(err, UnknownBlob, what)
	}
	g.putLink(ctx, name, t.Digest)
	return withRepo(links, name), nil
}

// withRepo adds a name upstream just confirmed, whether or not the store
// could record it.
func withRepo(l storage.Links, name string) storage.Links {
	if l.Has(name) {
		return l
	}
	l.Repos = append(append([]string{}, l.Repos...), name)
	sort.Strings(l.Repos)
	return l
}
