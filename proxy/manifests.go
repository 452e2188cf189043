package proxy

import (
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
)

// manifest serves HEAD|GET /v2/<name>/manifests/<ref>. An index is served as
// it is (it only points at manifests, each gated when asked for); an image
// manifest only once the gate has a clean verdict for its config and layers.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request, t target) {
	up := s.upstream(t)
	ask := s.gate.AskManifest
	if s.modeFor(r) == ModeStream {
		ask = s.gate.StreamManifest
	}
	a := ask(r.Context(), up, t.Target, acceptedTypes(r), s.holdFor(r), requestEvent(r, t.Image(), ""))
	if a.Err != nil {
		writeError(w, r, gateError(a.Err))
		return
	}
	if a.Decision.Outcome == verdict.Index {
		s.gate.Prefetch(up, t.Target, a.Digest, a.Body)
	}
	for _, warning := range a.Decision.Warnings {
		w.Header().Add("Warning", warning)
	}
	w.Header().Set("Content-Type", a.MediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.Body)))
	w.Header().Set("Docker-Content-Digest", a.Digest.String())
	w.Header().Set("Etag", `"`+a.Digest.String()+`"`)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(a.Body)
	s.metrics.ServedBytes(len(a.Body))
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

// busyRetryAfter is the Retry-After of a request refused because every
// connection slot to the upstream stayed taken.
const busyRetryAfter = 10 * time.Second
