package proxy

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
)

// blob serves HEAD|GET /v2/<name>/blobs/<digest>: from the store, only under
// an admitted name upstream confirmed carries it, and only when the gate
// lets it through (a clean verdict under the current ruleset in every
// context it is known in, or an operator's allow). Unlike a manifest, a
// blob is not refused for the other names it is known under: layers are
// shared (every image built on a base image carries its layers), so a deny
// on one publisher, or a policy tightened after a pull, would refuse them in
// every other image; names refuse the image, its manifest. A blob without a
// verdict is ingested first (held like a manifest); it is never streamed
// unscanned.
func (s *Server) blob(w http.ResponseWriter, r *http.Request, t target) {
	start := time.Now()
	ctx := r.Context()
	holdCtx, cancel := context.WithTimeout(ctx, s.holdFor(r))
	defer cancel()

	up := s.upstream(t)
	links, err := s.gate.BlobLinks(ctx, up, t.Target)
	if err != nil {
		writeError(w, r, gateError(err))
		return
	}
	// A manifest is judged at the manifests endpoint, image by image; the
	// same bytes asked for as a blob would skip that judgement.
	switch isManifest, err := s.opts.Blobs.IsManifest(ctx, t.Digest); {
	case err != nil:
		s.log.Error("look up stored manifest", "digest", t.Digest.String(), "err", err)
		writeError(w, r, errStoreUnavailable(fmt.Sprintf("read blob %s", t.Digest)))
		return
	case isManifest:
		writeError(w, r, &apiError{Code: errcode.ErrorCodeBlobUnknown,
			Message: fmt.Sprintf("pullgate: %s is a manifest: ask for it at /v2/%s/manifests/%s", t.Digest, t.Repo, t.Digest)})
		return
	}

	d := s.gate.JudgeBlob(ctx, holdCtx, up, t.Repo, t.Digest, links)
	// Decisions are recorded; a blob still scanning or one upstream failed
	// to send is not (the manifest's request records the image's).
	if d.Kind == gate.Denied || d.Outcome == verdict.Overridden {
		s.events.Emit(events.Event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: t.Registry + "/" + t.Repo, Digest: t.Digest,
			Decision: d.Outcome, Findings: d.Findings, Reason: d.Message, Latency: time.Since(start)})
	}
	if d.Refused() {
		writeError(w, r, refusalError(d))
		return
	}
	s.serveBlob(w, r, t.Digest)
}
