package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
)

// blob serves HEAD|GET /v2/<name>/blobs/<digest>: from the store, only under
// an admitted name upstream confirmed carries it, and only with a clean
// verdict under the current ruleset in every context it is known in (see
// blobVerdict). Unlike a manifest, a blob is not refused for the other names
// it is known under: layers are shared (every image built on a base image
// carries its layers), so a deny on one publisher, or a policy tightened
// after a pull, would refuse them in every other image; names refuse the
// image, its manifest. A blob without a verdict is ingested first (held
// like a manifest); it is never streamed unscanned.
func (s *Server) blob(w http.ResponseWriter, r *http.Request, t target) {
	start := time.Now()
	ctx := r.Context()
	holdCtx, cancel := context.WithTimeout(ctx, s.holdFor(r))
	defer cancel()

	up := s.upstream(t)
	name := t.Registry + "/" + t.Repo
	image := name + "@" + t.Digest.String()
	refuse := func(d decision) {
		s.record(event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: name, Digest: t.Digest,
			Decision: d.outcome, Findings: d.findings, Reason: d.message, Latency: time.Since(start)})
		writeError(w, r, d.err)
	}
	links, err := s.blobLinks(ctx, up, t)
	if err != nil {
		writeError(w, r, err)
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
	od, hasOverride := s.overridden(ctx, t.Digest, image)
	allowed := hasOverride && od.err == nil // an operator's allow on this digest
	if hasOverride && od.err != nil {
		refuse(od)
		return
	}
	if d, bad := s.knownBad(name, t.Digest, nil); bad {
		refuse(d)
		return
	}
	ref, v, err := s.blobVerdict(holdCtx, up, t, links)
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			msg := fmt.Sprintf("pullgate: blob %s of %s is still being scanned; retry in %s", t.Digest, name, s.opts.RetryAfter)
			writeError(w, r, errStillScanning(msg, s.opts.RetryAfter))
		default:
			// The client may be gone (ctx ended); it still gets a refusal,
			// never an empty 200.
			writeError(w, r, upstreamError(fmt.Sprintf("pullgate: blob %s of %s", t.Digest, name), err))
		}
		return
	}
	switch blocked := s.blobBlocked(v); {
	case blocked && allowed:
		// An operator allowed what the scanner refused: fetch it as it is
		// (digest verified), keep it, and say so in the audit trail.
		if err := s.fetchOverridden(holdCtx, up, t.Repo, ref); err != nil {
			writeError(w, r, upstreamError(fmt.Sprintf("pullgate: blob %s of %s", t.Digest, name), err))
			return
		}
		s.record(event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: name, Digest: t.Digest,
			Decision: od.outcome, Findings: v.Findings, Reason: od.message, Latency: time.Since(start)})
	case blocked:
		refuse(s.blobRefusal(name, ref, v))
		return
	}

	s.serveBlob(w, r, t.Digest)
}
