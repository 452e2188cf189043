package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// blob serves HEAD|GET /v2/<name>/blobs/<digest>: from the store, only with
// a clean verdict under the current ruleset. A blob without a verdict is
// ingested first (held like a manifest); it is never streamed unscanned.
func (s *Server) blob(w http.ResponseWriter, r *http.Request, t target) {
	start := time.Now()
	ctx := r.Context()
	holdCtx, cancel := context.WithTimeout(ctx, s.holdFor(r))
	defer cancel()

	ref := blobRef{Digest: t.Digest, Size: -1}
	name := t.Registry + "/" + t.Repo
	od, hasOverride := s.overridden(ctx, t, t.Digest, name+"@"+t.Digest.String())
	allowed := hasOverride && od.err == nil // an operator's allow on the digest or repository
	if hasOverride && od.err != nil {
		s.record(event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: name, Digest: t.Digest,
			Decision: od.name(), Reason: od.message, Latency: time.Since(start)})
		writeError(w, r, od.err)
		return
	}
	if d, bad := s.knownBad(name, t.Digest, nil); bad {
		s.record(event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: name, Digest: t.Digest,
			Decision: d.name(), Findings: d.findings, Reason: d.message, Latency: time.Since(start)})
		writeError(w, r, d.err)
		return
	}
	v, err := s.verdict(holdCtx, s.upstream(t), t.Repo, ref)
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
		if err := s.fetchOverridden(holdCtx, s.upstream(t), t.Repo, ref); err != nil {
			writeError(w, r, upstreamError(fmt.Sprintf("pullgate: blob %s of %s", t.Digest, name), err))
			return
		}
		s.record(event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: name, Digest: t.Digest,
			Decision: od.name(), Findings: v.Findings, Reason: od.message, Latency: time.Since(start)})
	case blocked:
		d := s.blobRefusal(name, ref, v)
		s.record(event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: name, Digest: t.Digest,
			Decision: d.name(), Findings: d.findings, Reason: d.message, Latency: time.Since(start)})
		writeError(w, r, d.err)
		return
	}

	s.serveBlob(w, r, t.Digest)
}
