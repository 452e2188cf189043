package proxy

import (
	"net/http"
)

// blob serves HEAD|GET /v2/<name>/blobs/<digest>: from the store, only under
// an admitted name upstream confirmed carries it, and only when the gate
// lets it through (a clean verdict under the current ruleset in every
// context it is known in, or an operator's allow). Unlike a manifest, a
// blob is not refused for the other names it is known under: layers are
// shared (every image built on a base image carries its layers), so a deny
// on one publisher, or a policy tightened after a pull, would refuse them in
// every other image; names refuse the image, its manifest. A blob without a
// verdict is ingested first (held like a manifest).
//
// In stream mode (stream.go) a layer of an image whose manifest was served
// early is streamed while it is scanned, its tail held until its verdict,
// so it is never sent whole unscanned; and on any GET, the config of such
// an image waits for the image's decision.
func (s *Server) blob(w http.ResponseWriter, r *http.Request, t target) {
	if r.Method == http.MethodGet {
		if err := s.gate.AwaitConfig(r.Context(), t.Target, s.holdFor(r)); err != nil {
			writeError(w, r, gateError(err))
			return
		}
		if s.modeFor(r) == ModeStream {
			if st := s.gate.StreamBlob(r.Context(), s.upstream(t), t.Target); st != nil {
				s.streamBlob(w, r, t, st)
				return
			}
		}
	}
	s.heldBlob(w, r, t)
}

// heldBlob answers a blob once the gate has decided on it.
func (s *Server) heldBlob(w http.ResponseWriter, r *http.Request, t target) {
	ev := requestEvent(r, t.Registry+"/"+t.Repo, t.Digest)
	if err := s.gate.AskBlob(r.Context(), s.upstream(t), t.Target, s.holdFor(r), ev); err != nil {
		writeError(w, r, gateError(err))
		return
	}
	s.serveBlob(w, r, t.Digest)
}
