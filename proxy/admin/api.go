package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/distribution/reference"
	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

func (c *Console) apiStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.status(r.Context()))
}

func (c *Console) apiPulls(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if n <= 0 {
		n = 100
	}
	writeJSON(w, http.StatusOK, map[string]any{"pulls": c.opts.Live.Recent(n)})
}

func (c *Console) apiBlocked(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"blocked": c.blockedWithOverrides(r.Context())})
}

func (c *Console) apiScans(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"scans": c.opts.Gate.Scans()})
}

func (c *Console) apiOverrides(w http.ResponseWriter, r *http.Request) {
	list, err := c.opts.Overrides.Overrides(r.Context())
	if err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "verdict store: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"overrides": list})
}

// OverrideRequest is the body of POST /admin/api/overrides.
type OverrideRequest struct {
	// Subject is a digest, an image by digest (name@sha256:…) or a
	// repository ("docker.io/library/alpine", or "alpine").
	Subject string `json:"subject"`
	Action  string `json:"action"` // allow or deny
	Reason  string `json:"reason"`
}

func (c *Console) apiPutOverride(w http.ResponseWriter, r *http.Request) {
	var req OverrideRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		adminError(w, r, http.StatusBadRequest, "body must be JSON: {\"subject\", \"action\", \"reason\"}: "+err.Error())
		return
	}
	created, err := c.setOverride(r.Context(), principalOf(r.Context()), req)
	if err != nil {
		adminError(w, r, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"overrides": created})
}

func (c *Console) apiDeleteOverride(w http.ResponseWriter, r *http.Request) {
	removed, err := c.removeOverride(r.Context(), principalOf(r.Context()), r.URL.Query().Get("subject"))
	if err != nil {
		adminError(w, r, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": removed})
}

// VerdictReport is what GET /admin/api/verdicts/{digest} says about a
// digest: its verdicts, its override, and for an image manifest in the
// store, the verdict of each of its blobs under the current ruleset.
type VerdictReport struct {
	Digest    digest.Digest         `json:"digest"`
	RulesetID string                `json:"current_ruleset"`
	Verdicts  []storage.Verdict     `json:"verdicts"`
	Override  *storage.Override     `json:"override,omitempty"`
	Blobs     []BlobVerdict         `json:"blobs,omitempty"`
	Audit     []storage.AuditRecord `json:"audit"`
}

// BlobVerdict is one blob of an image and its verdict under the current
// ruleset ("unscanned" when it has none).
type BlobVerdict struct {
	Digest   digest.Digest     `json:"digest"`
	Kind     string            `json:"kind"`
	Status   string            `json:"status"`
	Findings []storage.Finding `json:"findings,omitempty"`
	Override *storage.Override `json:"override,omitempty"`
}

func (c *Console) apiVerdicts(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d, err := digest.Parse(chi.URLParam(r, "digest"))
	if err != nil {
		adminError(w, r, http.StatusBadRequest, "not a digest: "+err.Error())
		return
	}
	rep := VerdictReport{Digest: d, RulesetID: c.opts.Gate.Scanner().RulesetID()}
	if rep.Verdicts, err = c.opts.Verdicts.Verdicts(ctx, d); err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "verdict store: "+err.Error())
		return
	}
	if rep.Override, err = c.overrideOf(ctx, d.String()); err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "verdict store: "+err.Error())
		return
	}
	if refs, ok := c.opts.Gate.ImageBlobs(ctx, d); ok {
		for _, ref := range refs {
			bv := BlobVerdict{Digest: ref.Digest, Kind: ref.Noun(), Status: "unscanned"}
			if v, err := c.opts.Verdicts.Verdict(ctx, ref.Digest, rep.RulesetID, ref.Context); err == nil {
				bv.Status, bv.Findings = string(v.Status), v.Findings
			}
			bv.Override, _ = c.overrideOf(ctx, ref.Digest.String())
			rep.Blobs = append(rep.Blobs, bv)
		}
	}
	if rep.Audit, err = c.queryAudit(ctx, storage.AuditQuery{Digest: d, Limit: 50}); err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "audit log: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (c *Console) apiAudit(w http.ResponseWriter, r *http.Request) {
	q := storage.AuditQuery{}
	v := r.URL.Query()
	if ds := v.Get("digest"); ds != "" {
		d, err := digest.Parse(ds)
		if err != nil {
			adminError(w, r, http.StatusBadRequest, "digest: "+err.Error())
			return
		}
		q.Digest = d
	}
	if img := v.Get("image"); img != "" {
		named, err := reference.ParseNormalizedNamed(img)
		if err != nil {
			adminError(w, r, http.StatusBadRequest, "image: "+err.Error())
			return
		}
		q.Image = named.String()
	}
	q.Limit, _ = strconv.Atoi(v.Get("limit"))
	records, err := c.queryAudit(r.Context(), q)
	if err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "audit log: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": records})
}

// apiStream sends server-sent events: "pull" with each decision
// (retroactive blocks included), "override" with each change, and "tick"
// every few seconds while anything is being scanned (every 15 s otherwise,
// as a keep-alive).
func (c *Console) apiStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	msgs, cancel := c.opts.Live.subscribe()
	defer cancel()
	send := func(m sseMessage) bool {
		data, err := json.Marshal(m.Data)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.Event, data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(sseMessage{Event: "hello", Data: map[string]string{"version": c.opts.Version}}) {
		return
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	quiet := 0
	for {
		select {
		case m := <-msgs:
			if !send(m) {
				return
			}
		case <-tick.C:
			scans := c.opts.Gate.Scans()
			quiet++
			if len(scans) > 0 || quiet >= 7 {
				quiet = 0
				if !send(sseMessage{Event: "tick", Data: map[string]any{"scans": len(scans)}}) {
					return
				}
			}
		case <-r.Context().Done():
			return
		case <-c.streamsDone:
			return
		}
	}
}

// errBadRequest marks an operator's mistake (400); other errors are the
// stores' (503).
var errBadRequest = errors.New("bad request")

func statusOf(err error) int {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}
