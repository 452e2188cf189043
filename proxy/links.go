package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/gate"
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
func (s *Server) linkManifest(ctx context.Context, t target, dgst digest.Digest, mediaType string, body []byte) {
	name := t.Registry + "/" + t.Repo
	s.putLink(ctx, name, dgst)
	switch mediaType {
	case gate.MediaTypeOCIManifest, gate.MediaTypeDockerManifest:
		refs, err := s.blobsOf(body)
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
			s.putLink(ctx, name, d, roles[d]...)
		}
	}
	// An index's children are not linked here: an index only claims
	// them, and a link must be what upstream confirmed. Each is linked
	// when fetched or confirmed under this name.
}

// putLink records a link. A link that cannot be recorded costs an upstream
// HEAD on the next request under that name, nothing worse, so it is logged
// and the request goes on.
func (s *Server) putLink(ctx context.Context, name string, dgst digest.Digest, roles ...storage.Context) {
	if err := s.opts.Verdicts.PutLink(ctx, name, dgst, roles...); err != nil {
		s.log.Warn("record repository link", "image", name, "digest", dgst.String(), "err", err)
	}
}

// manifestLinks returns what is known of the manifest dgst, confirming
// first with upstream (a HEAD of the manifest by digest in the repository
// of t) when that repository has no link to it.
func (s *Server) manifestLinks(ctx context.Context, up *upstream.Registry, t target, dgst digest.Digest, mediaType string, body []byte) (storage.Links, error) {
	name := t.Registry + "/" + t.Repo
	links, err := s.opts.Verdicts.Links(ctx, dgst)
	if err != nil {
		return storage.Links{}, errUnavailable(fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", t.imageAt(dgst), err))
	}
	if links.Has(name) {
		return links, nil
	}
	if up == nil {
		return storage.Links{}, errUnavailable(fmt.Sprintf("pullgate: %s: no upstream to confirm it with", t.imageAt(dgst)))
	}
	if _, err := up.Resolve(ctx, t.Repo, dgst.String(), gate.ManifestTypes); err != nil {
		return storage.Links{}, confirmError(err, errcode.ErrorCodeManifestUnknown, t.imageAt(dgst))
	}
	s.linkManifest(ctx, t, dgst, mediaType, body)
	return withRepo(links, name), nil
}

// blobLinks returns what is known of the blob t.Digest, confirming first
// with upstream (a HEAD of the blob in the repository of t) when that
// repository has no link to it.
func (s *Server) blobLinks(ctx context.Context, up *upstream.Registry, t target) (storage.Links, error) {
	name := t.Registry + "/" + t.Repo
	what := fmt.Sprintf("blob %s of %s", t.Digest, name)
	links, err := s.opts.Verdicts.Links(ctx, t.Digest)
	if err != nil {
		return storage.Links{}, errUnavailable(fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", what, err))
	}
	if links.Has(name) {
		return links, nil
	}
	if up == nil {
		return storage.Links{}, errUnavailable(fmt.Sprintf("pullgate: %s: no upstream to confirm it with", what))
	}
	if _, err := up.StatBlob(ctx, t.Repo, t.Digest); err != nil {
		return storage.Links{}, confirmError(err, errcode.ErrorCodeBlobUnknown, what)
	}
	s.putLink(ctx, name, t.Digest)
	return withRepo(links, name), nil
}

// confirmError words a failed confirmation: upstream answering that it
// does not have the content there (any client error but a rate limit) is
// "unknown", 404; upstream failing to answer is 503 (or 429 for its limit).
func confirmError(err error, unknown errcode.ErrorCode, what string) error {
	var ue *upstream.Error
	if upstream.IsNotFound(err) || (errors.As(err, &ue) && ue.StatusCode >= 400 && ue.StatusCode < 500 && ue.StatusCode != http.StatusTooManyRequests) {
		return &apiError{Code: unknown, Message: fmt.Sprintf("pullgate: %s: not found upstream in that repository", what)}
	}
	return upstreamError(fmt.Sprintf("pullgate: confirm %s with upstream", what), err)
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
