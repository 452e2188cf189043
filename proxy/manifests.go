package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// manifest serves HEAD|GET /v2/<name>/manifests/<ref>. An index is served as
// it is (it only points at manifests, each gated when asked for); an image
// manifest only once the gate has a clean verdict for its config and layers.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request, t target) {
	ev := event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: t.Image()}
	a := s.askManifest(r.Context(), t, acceptedTypes(r), s.holdFor(r), ev)
	if a.err != nil {
		writeError(w, r, a.err)
		return
	}
	if a.decision.Outcome == verdict.Index {
		s.prefetch(s.upstream(t), t, a.digest, a.body)
	}
	for _, warning := range a.decision.Warnings {
		w.Header().Add("Warning", warning)
	}
	w.Header().Set("Content-Type", a.mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.Header().Set("Docker-Content-Digest", a.digest.String())
	w.Header().Set("Etag", `"`+a.digest.String()+`"`)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(a.body)
	s.metrics.servedBytes(len(a.body))
}

// manifestAnswer is the gate's answer to a request for a manifest.
type manifestAnswer struct {
	digest    digest.Digest
	mediaType string
	body      []byte
	decision  gate.Decision // no Outcome when it failed before a decision
	err       error         // what the client gets instead of the manifest
}

// askManifest fetches a manifest (from the store, else upstream, verified)
// and has the gate decide on it, recording the decision as ev. The hold
// covers the whole answer: the upstream requests for the tag and the
// manifest (which may wait for a connection slot) as well as the scans, so
// a client always has its answer within it.
func (s *Server) askManifest(ctx context.Context, t target, accept []string, hold time.Duration, ev event) manifestAnswer {
	start := time.Now()
	up := s.upstream(t)
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	desc, err := s.resolve(holdCtx, up, t, accept)
	if err != nil {
		return manifestAnswer{err: s.pastHold(ctx, holdCtx, t.Image(), err)}
	}
	body, mediaType, err := s.loadManifest(holdCtx, up, t, desc.Digest)
	if err != nil {
		return manifestAnswer{digest: desc.Digest, err: s.pastHold(ctx, holdCtx, t.imageAt(desc.Digest), err)}
	}
	a := manifestAnswer{digest: desc.Digest, mediaType: mediaType, body: body}
	// Served only under a name upstream confirmed carries it, and only if
	// every name that carries it is admitted.
	links, err := s.manifestLinks(ctx, up, t, desc.Digest, mediaType, body)
	if err != nil {
		a.err = err
		return a
	}
	a.decision = s.judgeManifest(ctx, up, t, a, links, max(hold-time.Since(start), 0))
	ev.Digest, ev.Decision, ev.Findings, ev.Reason = desc.Digest, a.decision.Outcome, a.decision.Findings, a.decision.Message
	ev.Latency = time.Since(start)
	s.record(ev)
	a.err = refusalError(a.decision)
	return a
}

// judgeManifest gathers the facts on a manifest and decides.
func (s *Server) judgeManifest(ctx context.Context, up *upstream.Registry, t target, a manifestAnswer, links storage.Links, hold time.Duration) gate.Decision {
	if refused := s.admitLinked(ctx, t.Registry+"/"+t.Repo, t.imageAt(a.digest), links); refused != nil {
		return s.gate.Judge(gate.Facts{NameRefused: refused})
	}
	switch {
	case gate.IsIndex(a.mediaType):
		return s.gate.Judge(gate.Facts{Subject: gate.Index, Name: t.Registry + "/" + t.Repo, Digest: a.digest, Invalid: gate.CheckIndex(a.body)})
	case gate.IsImageManifest(a.mediaType):
		return s.gate.JudgeImage(ctx, up, t.Repo, a.digest, a.body, hold)
	}
	return s.gate.Judge(gate.Facts{Name: t.Registry + "/" + t.Repo, Digest: a.digest,
		Invalid: fmt.Errorf("it has media type %q, which pullgate does not serve", truncate(a.mediaType, 100))})
}

// resolve turns the reference into a digest: a digest as it is, a tag from
// the tag cache, else by an upstream HEAD, else (upstream unreachable or
// rate-limited) from the last mapping seen, which is logged.
func (s *Server) resolve(ctx context.Context, up *upstream.Registry, t target, accept []string) (upstream.Descriptor, error) {
	if t.Digest != "" {
		return upstream.Descriptor{Digest: t.Digest}, nil
	}
	key := t.Registry + "/" + t.Repo + ":" + t.Ref + "|" + strings.Join(accept, ",")
	if d, ok := s.tags.get(key); ok {
		s.metrics.tagCache(true)
		return d, nil
	}
	s.metrics.tagCache(false)
	d, err := up.Resolve(ctx, t.Repo, t.Ref, accept)
	if err == nil {
		s.tags.put(key, d)
		rec := storage.TagRecord{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, Time: time.Now().UTC()}
		if perr := s.opts.Verdicts.PutTag(ctx, key, rec); perr != nil {
			s.log.Warn("remember tag", "image", t.Image(), "err", perr)
		}
		return d, nil
	}
	if upstream.IsNotFound(err) {
		return d, &apiError{Code: errcode.ErrorCodeManifestUnknown, Message: fmt.Sprintf("pullgate: %s: not found upstream", t.Image())}
	}
	if rec, terr := s.opts.Verdicts.Tag(ctx, key); terr == nil {
		s.log.Warn("upstream unavailable; serving last known tag", "image", t.Image(), "digest", rec.Digest.String(),
			"seen", rec.Time, "upstream", up.Name(), "err", err)
		return upstream.Descriptor{Digest: rec.Digest, MediaType: rec.MediaType, Size: rec.Size}, nil
	}
	return d, upstreamError(fmt.Sprintf("pullgate: resolve %s", t.Image()), err)
}

// loadManifest returns a manifest's bytes and media type, from the store or
// else from upstream (verified against its digest, then stored).
func (s *Server) loadManifest(ctx context.Context, up *upstream.Registry, t target, dgst digest.Digest) ([]byte, string, error) {
	body, mt, err := s.opts.Blobs.Manifest(ctx, dgst)
	if err == nil {
		// The bytes are verified against their digest; the media type
		// recorded beside them is not, so it must agree with them.
		kind, kerr := gate.ManifestKind(body)
		if kerr == nil && kind == mt {
			return body, mt, nil
		}
		s.log.Error("stored manifest's media type does not match its bytes; removed, fetching it again",
			"digest", dgst.String(), "recorded", truncate(mt, 100), "kind", kind, "err", kerr)
		if derr := s.opts.Blobs.DeleteManifest(ctx, dgst); derr != nil {
			s.log.Error("remove stored manifest", "digest", dgst.String(), "err", derr)
			return nil, "", errStoreUnavailable(fmt.Sprintf("read manifest %s", dgst))
		}
		err = storage.ErrNotFound
	}
	if errors.Is(err, storage.ErrDigestMismatch) {
		s.log.Error("stored manifest failed verification; removed, fetching it again", "digest", dgst.String(), "err", err)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		s.log.Error("read stored manifest", "digest", dgst.String(), "err", err)
		return nil, "", errStoreUnavailable(fmt.Sprintf("read manifest %s", dgst))
	}
	body, _, err = up.Manifest(ctx, t.Repo, dgst, gate.ManifestTypes)
	if err != nil {
		if upstream.IsNotFound(err) {
			return nil, "", &apiError{Code: errcode.ErrorCodeManifestUnknown, Message: fmt.Sprintf("pullgate: %s: not found upstream", t.imageAt(dgst))}
		}
		return nil, "", upstreamError(fmt.Sprintf("pullgate: fetch manifest %s", t.imageAt(dgst)), err)
	}
	mt, err = gate.ManifestKind(body)
	if err != nil {
		return nil, "", &apiError{Code: errcode.ErrorCodeManifestInvalid,
			Message: fmt.Sprintf("pullgate: %s refused: malformed image manifest or index: %v", t.imageAt(dgst), err)}
	}
	if err := s.opts.Blobs.PutManifest(ctx, dgst, mt, body); err != nil {
		s.log.Error("store manifest", "digest", dgst.String(), "err", err)
		return nil, "", errStoreUnavailable(fmt.Sprintf("store manifest %s", dgst))
	}
	s.linkManifest(ctx, t, dgst, mt, body)
	return body, mt, nil
}

// acceptedTypes lists the manifest types the client accepts, in a stable
// order (part of the tag cache key: a client that takes no index gets a
// platform's manifest from upstream). No Accept header means all of them.
func acceptedTypes(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Accept") {
		for _, part := range strings.Split(h, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			mt = strings.TrimSpace(mt)
			if slices.Contains(gate.ManifestTypes, mt) && !slices.Contains(out, mt) {
				out = append(out, mt)
			}
		}
	}
	if len(out) == 0 {
		return gate.ManifestTypes
	}
	sort.Strings(out)
	return out
}

// pastHold turns a failure that came from the hold running out (while the
// client is still there) into the hold's own answer: 429 with Retry-After.
func (s *Server) pastHold(ctx, holdCtx context.Context, image string, err error) error {
	if holdCtx.Err() == nil || ctx.Err() != nil {
		return err
	}
	msg := fmt.Sprintf("pullgate: %s: the upstream registry did not answer in time; retry in %s", image, s.opts.RetryAfter)
	return errStillScanning(msg, s.opts.RetryAfter)
}

// busyRetryAfter is the Retry-After of a request refused because every
// connection slot to the upstream stayed taken.
const busyRetryAfter = 10 * time.Second
