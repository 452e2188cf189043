package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pullgate/pullgate/storage"
)

// AdminOptions configure the operator's window: the /admin/ page and its
// JSON API, the audit log and the alerts.
type AdminOptions struct {
	// Token grants the admin role (look and change overrides);
	// ReadOnlyToken the read-only one. With neither, /admin is disabled.
	Token         string
	ReadOnlyToken string
	// Separate serves /admin only from AdminHandler (a listener of its
	// own), not from Handler.
	Separate bool
	// Audit is the durable log of decisions and override changes; nil
	// keeps recent decisions in memory only.
	Audit storage.AuditLog
	// Webhook sends an alert on each block.
	Webhook WebhookOptions
}

// admin is the Server's part that serves the operator: embedded in Server.
type admin struct {
	auth        adminAuth
	live        *live
	share       *eventShare // nil unless the verdict store has an event bus
	audit       *auditWriter
	logins      loginLimiter
	hook        *webhook
	size        storeSize
	streamsDone chan struct{}
	streamsOnce sync.Once
}

// startAdmin sets up the admin page's state and the background writers,
// and reloads recent decisions from the audit log.
func (s *Server) startAdmin() error {
	o := s.opts.Admin
	s.auth = newAdminAuth(o.Token, o.ReadOnlyToken)
	s.live = newLive()
	s.size.interval = time.Minute
	s.streamsDone = make(chan struct{})
	s.metrics.observeUpstreams(s.opts.Upstreams)
	hook, err := newWebhook(o.Webhook, s.opts.Version, s.log, s.metrics)
	if err != nil {
		return err
	}
	s.hook = hook
	s.audit = newAuditWriter(o.Audit, s.log, s.metrics)
	// Join the bus before reading the audit log, so that no decision falls
	// between the two; live keeps one that is in both once.
	s.share = startSharing(s.opts.Verdicts, s.live, s.log, s.metrics)
	var recs []storage.AuditRecord
	if o.Audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if recs, err = o.Audit.Query(ctx, storage.AuditQuery{Limit: recentEvents}); err != nil {
			s.log.Warn("admin: recent decisions not reloaded from the audit log", "err", err)
		}
	}
	s.live.load(recs)
	return nil
}

// AdminHandler serves /admin/ with /metrics, /healthz and /readyz, for a
// listener of its own (AdminOptions.Separate).
func (s *Server) AdminHandler() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(s.metrics.middleware)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", s.ready)
	r.Handle("/metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	r.Mount("/admin", s.adminRoutes())
	r.Get("/", http.RedirectHandler("/admin/", http.StatusFound).ServeHTTP)
	return r
}

// StopStreams ends the admin page's event streams, which would otherwise
// keep an http.Server's Shutdown waiting; register it with
// http.Server.RegisterOnShutdown.
func (s *Server) StopStreams() { s.streamsOnce.Do(func() { close(s.streamsDone) }) }

// Close stops the background work: it ends the event streams, leaves the
// event bus after publishing what is queued, writes the queued audit
// records and lets alerts in flight finish, until ctx ends.
func (s *Server) Close(ctx context.Context) {
	s.StopStreams()
	s.share.close(ctx)
	s.audit.close(ctx)
	s.hook.close(ctx)
}

// adminRoutes is everything under /admin/.
func (s *Server) adminRoutes() http.Handler {
	r := chi.NewRouter()
	r.Use(securityHeaders)
	r.Use(s.adminGuard)
	r.Get("/", s.adminPage)
	r.Get("/live", s.adminFragment)
	r.Handle("/static/*", http.StripPrefix("/admin/", staticFiles))
	r.Post("/overrides", s.adminFormOverride)
	r.Post("/overrides/delete", s.adminFormDelete)
	r.Route("/api", func(r chi.Router) {
		r.Get("/status", s.apiStatus)
		r.Get("/pulls", s.apiPulls)
		r.Get("/blocked", s.apiBlocked)
		r.Get("/scans", s.apiScans)
		r.Get("/overrides", s.apiOverrides)
		r.Post("/overrides", s.apiPutOverride)
		r.Delete("/overrides", s.apiDeleteOverride)
		r.Get("/verdicts/{digest}", s.apiVerdicts)
		r.Get("/audit", s.apiAudit)
		r.Get("/stream", s.apiStream)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			adminError(w, r, http.StatusNotFound, "no such API endpoint")
		})
	})
	return r
}

// adminError answers JSON under /admin/api/ and text elsewhere.
func adminError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/admin/api/") {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte("pullgate: " + msg + "\n"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status(r.Context()))
}

func (s *Server) apiPulls(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if n <= 0 {
		n = 100
	}
	writeJSON(w, http.StatusOK, map[string]any{"pulls": s.live.recent(n)})
}

func (s *Server) apiBlocked(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"blocked": s.blockedWithOverrides(r.Context())})
}

func (s *Server) apiScans(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"scans": s.Scans()})
}

func (s *Server) apiOverrides(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Verdicts.Overrides(r.Context())
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

func (s *Server) apiPutOverride(w http.ResponseWriter, r *http.Request) {
	var req OverrideRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		adminError(w, r, http.StatusBadRequest, "body must be JSON: {\"subject\", \"action\", \"reason\"}: "+err.Error())
		return
	}
	created, err := s.setOverride(r.Context(), principalOf(r.Context()), req)
	if err != nil {
		adminError(w, r, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"overrides": created})
}

func (s *Server) apiDeleteOverride(w http.ResponseWriter, r *http.Request) {
	removed, err := s.removeOverride(r.Context(), principalOf(r.Context()), r.URL.Query().Get("subject"))
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

func (s *Server) apiVerdicts(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d, err := digest.Parse(chi.URLParam(r, "digest"))
	if err != nil {
		adminError(w, r, http.StatusBadRequest, "not a digest: "+err.Error())
		return
	}
	rep := VerdictReport{Digest: d, RulesetID: s.scanner().RulesetID()}
	if rep.Verdicts, err = s.opts.Verdicts.Verdicts(ctx, d); err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "verdict store: "+err.Error())
		return
	}
	if rep.Override, err = s.overrideOf(ctx, d.String()); err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "verdict store: "+err.Error())
		return
	}
	if refs, ok := s.storedImageBlobs(ctx, d); ok {
		for _, ref := range refs {
			bv := BlobVerdict{Digest: ref.Digest, Kind: ref.noun(), Status: "unscanned"}
			if v, err := s.opts.Verdicts.Verdict(ctx, ref.Digest, rep.RulesetID); err == nil {
				bv.Status, bv.Findings = string(v.Status), v.Findings
			}
			bv.Override, _ = s.overrideOf(ctx, ref.Digest.String())
			rep.Blobs = append(rep.Blobs, bv)
		}
	}
	if rep.Audit, err = s.audit.query(ctx, storage.AuditQuery{Digest: d, Limit: 50}); err != nil {
		adminError(w, r, http.StatusServiceUnavailable, "audit log: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request) {
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
	records, err := s.audit.query(r.Context(), q)
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
func (s *Server) apiStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	msgs, cancel := s.live.subscribe()
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
	if !send(sseMessage{Event: "hello", Data: map[string]string{"version": s.opts.Version}}) {
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
			scans := s.Scans()
			quiet++
			if len(scans) > 0 || quiet >= 7 {
				quiet = 0
				if !send(sseMessage{Event: "tick", Data: map[string]any{"scans": len(scans)}}) {
					return
				}
			}
		case <-r.Context().Done():
			return
		case <-s.streamsDone:
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

// parseSubject turns what an operator typed into an override subject: a
// digest (an image given by digest counts as its digest) or a fully
// qualified repository name.
func parseSubject(in string) (subject string, image string, err error) {
	in = strings.TrimSpace(in)
	if in == "" {
		return "", "", fmt.Errorf("%w: a subject is required: a digest, an image by digest, or a repository", errBadRequest)
	}
	if d, err := digest.Parse(in); err == nil {
		return d.String(), "", nil
	}
	named, err := reference.ParseNormalizedNamed(in)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q is not a digest, an image by digest or a repository: %v", errBadRequest, in, err)
	}
	if c, ok := named.(reference.Canonical); ok {
		return c.Digest().String(), named.String(), nil
	}
	if _, ok := named.(reference.Tagged); ok {
		return "", "", fmt.Errorf("%w: %q names a tag, which can move: give the image's digest, or the repository %s", errBadRequest, in, reference.TrimNamed(named).String())
	}
	return named.Name(), "", nil
}

// setOverride records an operator's allow or deny. Allowing an image by
// its manifest digest also allows each of its blobs that did not scan
// clean, so its layers can be served; those overrides name the image in
// their reason and go when it goes. Each change is written to the audit
// log first: a change that cannot be audited is not made.
func (s *Server) setOverride(ctx context.Context, p principal, req OverrideRequest) ([]storage.Override, error) {
	subject, image, err := parseSubject(req.Subject)
	if err != nil {
		return nil, err
	}
	action := storage.Action(strings.ToLower(strings.TrimSpace(req.Action)))
	if action != storage.Allow && action != storage.Deny {
		return nil, fmt.Errorf("%w: action must be allow or deny, not %q", errBadRequest, req.Action)
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		return nil, fmt.Errorf("%w: a reason is required", errBadRequest)
	}
	if len(reason) > 500 {
		return nil, fmt.Errorf("%w: the reason is longer than 500 characters", errBadRequest)
	}
	now := time.Now().UTC()
	list := []storage.Override{{Subject: subject, Action: action, Reason: reason, Actor: p.actor(), Time: now}}
	if d, err := digest.Parse(subject); err == nil && action == storage.Allow {
		blobs, err := s.unclean(ctx, d)
		if err != nil {
			return nil, err
		}
		for _, b := range blobs {
			list = append(list, storage.Override{Subject: b.String(), Action: storage.Allow,
				Reason: reason + " " + partOf(d), Actor: p.actor(), Time: now})
		}
	}
	for _, o := range list {
		if err := o.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadRequest, err)
		}
	}
	for _, o := range list {
		rec := storage.AuditRecord{Time: now, Kind: storage.AuditOverride, Actor: o.Actor, Subject: o.Subject,
			Action: string(o.Action), Reason: o.Reason, Image: image}
		if err := s.audit.appendNow(ctx, rec); err != nil {
			return nil, fmt.Errorf("audit log unavailable, override not made: %w", err)
		}
		if err := s.opts.Verdicts.PutOverride(ctx, o); err != nil {
			return nil, fmt.Errorf("store override for %s: %w", o.Subject, err)
		}
		s.log.Warn("override set", "subject", o.Subject, "action", string(o.Action), "actor", o.Actor, "reason", o.Reason)
	}
	s.metrics.overrideChanged(string(action))
	s.live.notify(sseMessage{Event: "override", Data: list})
	return list, nil
}

// partOf marks the blob overrides made for an image.
func partOf(d digest.Digest) string { return "(blob of image " + d.String() + ")" }

// removeOverride removes an override, and with an image's allow the allows
// made for its blobs.
func (s *Server) removeOverride(ctx context.Context, p principal, in string) ([]string, error) {
	subject, _, err := parseSubject(in)
	if err != nil {
		return nil, err
	}
	o, err := s.opts.Verdicts.Override(ctx, subject)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("no override for %s: %w", subject, err)
		}
		return nil, err
	}
	subjects := []string{subject}
	if d, err := digest.Parse(subject); err == nil && o.Action == storage.Allow {
		all, err := s.opts.Verdicts.Overrides(ctx)
		if err != nil {
			return nil, err
		}
		for _, b := range all {
			if b.Subject != subject && strings.HasSuffix(b.Reason, partOf(d)) {
				subjects = append(subjects, b.Subject)
			}
		}
	}
	for _, sub := range subjects {
		rec := storage.AuditRecord{Kind: storage.AuditOverride, Actor: p.actor(), Subject: sub, Action: "remove",
			Reason: "removed " + string(o.Action) + " override"}
		if err := s.audit.appendNow(ctx, rec); err != nil {
			return nil, fmt.Errorf("audit log unavailable, override not removed: %w", err)
		}
		if err := s.opts.Verdicts.DeleteOverride(ctx, sub); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("remove override for %s: %w", sub, err)
		}
		s.log.Warn("override removed", "subject", sub, "actor", p.actor())
	}
	s.metrics.overrideChanged("remove")
	s.live.notify(sseMessage{Event: "override", Data: map[string]any{"removed": subjects}})
	return subjects, nil
}

// unclean lists the blobs of image manifest d whose verdict under the
// current ruleset is not clean: from the manifest in the store, and from
// the findings of its refusals.
func (s *Server) unclean(ctx context.Context, d digest.Digest) ([]digest.Digest, error) {
	rid := s.scanner().RulesetID()
	var candidates []digest.Digest
	if refs, ok := s.storedImageBlobs(ctx, d); ok {
		for _, ref := range refs {
			candidates = append(candidates, ref.Digest)
		}
	}
	for _, f := range s.live.blockedFindings(d) {
		if f.Layer != "" {
			candidates = append(candidates, f.Layer)
		}
	}
	seen := map[digest.Digest]bool{d: true}
	var out []digest.Digest
	for _, c := range candidates {
		if seen[c] {
			continue
		}
		seen[c] = true
		v, err := s.opts.Verdicts.Verdict(ctx, c, rid)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return nil, fmt.Errorf("verdict store: %w", err)
		case v.Status != storage.StatusClean:
			out = append(out, c)
		}
	}
	return out, nil
}

// storedImageBlobs lists the blobs of d when d is an image manifest in the
// store.
func (s *Server) storedImageBlobs(ctx context.Context, d digest.Digest) ([]blobRef, bool) {
	body, mt, err := s.opts.Blobs.Manifest(ctx, d)
	if err != nil || (mt != mediaTypeOCIManifest && mt != mediaTypeDockerManifest) {
		return nil, false
	}
	refs, err := s.blobsOf(body)
	return refs, err == nil
}

func (s *Server) overrideOf(ctx context.Context, subject string) (*storage.Override, error) {
	o, err := s.opts.Verdicts.Override(ctx, subject)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &o, nil
}

// blockedWithOverrides is the blocked list with each entry's override on
// its digest or its repository.
func (s *Server) blockedWithOverrides(ctx context.Context) []BlockedImage {
	list := s.live.blockedImages()
	overrides, err := s.opts.Verdicts.Overrides(ctx)
	if err != nil {
		return list
	}
	by := make(map[string]storage.Override, len(overrides))
	for _, o := range overrides {
		by[o.Subject] = o
	}
	for i := range list {
		if o, ok := by[list[i].Digest.String()]; ok {
			list[i].Override = &o
		} else if named, err := reference.ParseNormalizedNamed(list[i].Image); err == nil {
			if o, ok := by[named.Name()]; ok {
				list[i].Override = &o
			}
		}
	}
	return list
}
