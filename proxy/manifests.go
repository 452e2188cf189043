package proxy

import (
	"context"
	"encoding/json"
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
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// Manifest media types pullgate serves.
const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	mediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
)

var manifestTypes = []string{mediaTypeOCIIndex, mediaTypeDockerList, mediaTypeOCIManifest, mediaTypeDockerManifest}

// manifest serves HEAD|GET /v2/<name>/manifests/<ref>. An index is served as
// it is (it only points at manifests, each gated when asked for); an image
// manifest only once the gate has a clean verdict for its config and layers.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request, t target) {
	start := time.Now()
	ctx := r.Context()
	up := s.upstream(t)
	accept := acceptedTypes(r)
	// The hold covers the whole answer: the upstream requests for the tag
	// and the manifest (which may wait for a connection slot) as well as
	// the scans, so a client always has its answer within it.
	hold := s.holdFor(r)
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()

	desc, err := s.resolve(holdCtx, up, t, accept)
	if err != nil {
		writeError(w, r, s.pastHold(ctx, holdCtx, t.Image(), err))
		return
	}
	body, mediaType, err := s.loadManifest(holdCtx, up, t, desc.Digest)
	if err != nil {
		writeError(w, r, s.pastHold(ctx, holdCtx, t.imageAt(desc.Digest), err))
		return
	}
	ev := event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: t.Image(), Digest: desc.Digest}
	// Served only under a name upstream confirmed carries it, and only if
	// every name that carries it is admitted.
	links, err := s.manifestLinks(ctx, up, t, desc.Digest, mediaType, body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.admitLinked(ctx, t.Registry+"/"+t.Repo, t.imageAt(desc.Digest), links); err != nil {
		ev.Decision, ev.Reason, ev.Latency = verdict.Policy, asAPIError(err).Message, time.Since(start)
		s.record(ev)
		writeError(w, r, err)
		return
	}

	switch mediaType {
	case mediaTypeOCIIndex, mediaTypeDockerList:
		if err := checkIndex(body); err != nil {
			msg := fmt.Sprintf("pullgate: %s refused: %v", t.imageAt(desc.Digest), err)
			ev.Decision, ev.Reason, ev.Latency = verdict.Failed, msg, time.Since(start)
			s.record(ev)
			writeError(w, r, &apiError{Code: errcode.ErrorCodeManifestInvalid, Message: msg})
			return
		}
		ev.Decision = verdict.Index
	case mediaTypeOCIManifest, mediaTypeDockerManifest:
		d := s.decide(ctx, up, t, desc.Digest, body, max(hold-time.Since(start), 0))
		ev.Decision, ev.Findings, ev.Reason = d.outcome, d.findings, d.message
		ev.Latency = time.Since(start)
		s.record(ev)
		if d.err != nil {
			writeError(w, r, d.err)
			return
		}
		for _, warning := range d.warnings {
			w.Header().Add("Warning", warning)
		}
	default:
		writeError(w, r, &apiError{Code: errcode.ErrorCodeManifestInvalid,
			Message: fmt.Sprintf("pullgate: %s has media type %q, which pullgate does not serve", t.imageAt(desc.Digest), mediaType)})
		return
	}
	if ev.Decision == verdict.Index {
		ev.Latency = time.Since(start)
		s.record(ev)
		s.prefetch(up, t, desc.Digest, body)
	}

	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	w.Header().Set("Etag", `"`+desc.Digest.String()+`"`)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
	s.metrics.servedBytes(len(body))
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
		kind, kerr := manifestKind(body)
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
	body, _, err = up.Manifest(ctx, t.Repo, dgst, manifestTypes)
	if err != nil {
		if upstream.IsNotFound(err) {
			return nil, "", &apiError{Code: errcode.ErrorCodeManifestUnknown, Message: fmt.Sprintf("pullgate: %s: not found upstream", t.imageAt(dgst))}
		}
		return nil, "", upstreamError(fmt.Sprintf("pullgate: fetch manifest %s", t.imageAt(dgst)), err)
	}
	mt, err = manifestKind(body)
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

// manifestKind says what a manifest is from its own bytes: the media type
// it declares, or (OCI allows it to be absent) its shape. A document whose
// fields say both index and image manifest is refused: clients that read it
// as one or the other would see different things, and an index is served
// without the gate (containerd and the OCI spec refuse such documents since
// the ambiguity was found in 2021). What the upstream's Content-Type or the
// store's record says is checked against this, never trusted instead.
func manifestKind(body []byte) (string, error) {
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
		Layers    json.RawMessage `json:"layers"`
		FSLayers  json.RawMessage `json:"fsLayers"`
		Schema    int             `json:"schemaVersion"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return "", fmt.Errorf("not a JSON manifest: %v", err)
	}
	index := probe.Manifests != nil
	image := probe.Config != nil || probe.Layers != nil || probe.FSLayers != nil
	if index && image {
		return "", errors.New("it has both an index's manifests and an image's config or layers")
	}
	switch probe.MediaType {
	case mediaTypeOCIIndex, mediaTypeDockerList:
		if image {
			return "", fmt.Errorf("it declares %s but has an image's config or layers", probe.MediaType)
		}
		return probe.MediaType, nil
	case mediaTypeOCIManifest, mediaTypeDockerManifest:
		if index {
			return "", fmt.Errorf("it declares %s but has an index's manifests", probe.MediaType)
		}
		return probe.MediaType, nil
	case "":
		switch {
		case index:
			return mediaTypeOCIIndex, nil
		case probe.Config != nil:
			return mediaTypeOCIManifest, nil
		case probe.FSLayers != nil, probe.Schema == 1:
			return "application/vnd.docker.distribution.manifest.v1+json", nil // schema1: refused by name
		}
		return "", errors.New("it declares no media type and has neither manifests nor a config")
	}
	// Another declared type (schema1, an artifact manifest): refused by the
	// handler, by name.
	return probe.MediaType, nil
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
			if slices.Contains(manifestTypes, mt) && !slices.Contains(out, mt) {
				out = append(out, mt)
			}
		}
	}
	if len(out) == 0 {
		return manifestTypes
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
