package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pullgate/pullgate/proxy/events"
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
	// Bus shares decisions with the other replicas' admin pages; nil:
	// this replica's page shows its own decisions only.
	Bus storage.EventBus
	// Webhook sends an alert on each block.
	Webhook WebhookOptions
}

// admin is the Server's part that serves the operator: embedded in Server.
type admin struct {
	auth        adminAuth
	events      events.Fanout // what record emits to
	live        *live
	bus         *events.Bus // nil without an event bus
	audit       auditLog
	logins      loginLimiter
	hook        *events.Webhook
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
	s.metrics.ObserveUpstreams(s.opts.Upstreams)
	hook, err := events.NewWebhook(o.Webhook, s.opts.Version, s.log, s.metrics.Metrics)
	if err != nil {
		return err
	}
	s.hook = hook
	s.audit = auditLog{events.NewAudit(o.Audit, s.log, s.metrics.Metrics)}
	if o.Audit == nil {
		s.log.Warn("running without an audit log: decisions and override changes are not kept")
	}
	if o.Bus == nil {
		s.log.Info("running without an event bus: the admin page shows this replica's decisions only")
	}
	// Join the bus before reading the audit log, so that no decision falls
	// between the two; live keeps one that is in both once.
	s.bus = events.JoinBus(o.Bus, events.SinkFunc(s.live.addShared), s.log, s.metrics.Metrics)
	s.events = events.Fanout{events.Log(s.log), s.metrics.Metrics, s.live, s.bus, s.audit.Audit, s.hook}
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
	r := s.operationalRouter()
	r.Mount("/admin", s.adminRoutes())
	r.Get("/", http.RedirectHandler("/admin/", http.StatusFound).ServeHTTP)
	return r
}

// StopStreams ends the admin page's event streams, which would otherwise
// keep an http.Server's Shutdown waiting; register it with
// http.Server.RegisterOnShutdown.
func (s *Server) StopStreams() { s.streamsOnce.Do(func() { close(s.streamsDone) }) }

// Close stops the background work: it ends the event streams, lets the
// ingests in progress record their verdicts (a blob committed without one
// would be scanned again at the next start), leaves the event bus after
// publishing what is queued, writes the queued audit records and lets
// alerts in flight finish, until ctx ends.
func (s *Server) Close(ctx context.Context) {
	s.StopStreams()
	if n := s.flights.drain(ctx) + s.allowFlights.drain(ctx); n > 0 {
		s.log.Warn("stopped with ingests still running; they are redone when asked for", "ingests", n)
	}
	s.bus.Close(ctx)
	s.audit.Close(ctx)
	s.hook.Close(ctx)
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
