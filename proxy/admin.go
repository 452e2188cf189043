package proxy

import (
	"context"
	"net/http"
	"strings"

	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
)

// AdminOptions configure the operator's window: the /admin/ page and its
// JSON API, the audit log, the alerts and the sharing of decisions between
// replicas.
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
	Webhook events.WebhookOptions
}

// operator is the Server's part that serves the operator: the sinks its
// decisions go to, and the admin page. Embedded in Server.
type operator struct {
	events  events.Fanout // where every decision is emitted, once
	live    *admin.Live
	bus     *events.Bus // nil without an event bus
	audit   *events.Audit
	hook    *events.Webhook
	console *admin.Console
}

// startSinks starts the sinks every decision fans out to and reloads
// recent decisions from the audit log. They exist before the gate, which
// emits to them.
func (s *Server) startSinks() error {
	o := s.opts.Admin
	s.metrics.ObserveUpstreams(s.opts.Upstreams)
	hook, err := events.NewWebhook(o.Webhook, s.opts.Version, s.log, s.metrics)
	if err != nil {
		return err
	}
	s.hook = hook
	s.audit = events.NewAudit(o.Audit, s.log, s.metrics)
	if o.Audit == nil {
		s.log.Warn("running without an audit log: decisions and override changes are not kept")
	}
	if o.Bus == nil {
		s.log.Info("running without an event bus: the admin page shows this replica's decisions only")
	}
	s.live = admin.NewLive()
	// Join the bus before reading the audit log, so that no decision falls
	// between the two; live keeps one that is in both once.
	s.bus = events.JoinBus(o.Bus, s.live.Remote(), s.log, s.metrics)
	s.live.LoadFrom(o.Audit, s.log)
	s.events = events.Fanout{events.Log(s.log), s.metrics, s.live, s.bus, s.audit, s.hook}
	return nil
}

// startConsole builds the admin page over the gate.
func (s *Server) startConsole() {
	o := s.opts.Admin
	s.console = admin.New(admin.Options{
		Token: o.Token, ReadOnlyToken: o.ReadOnlyToken,
		Gate: s.gate, Verdicts: s.opts.Verdicts, Overrides: s.opts.Verdicts, Blobs: s.opts.Blobs, Audit: o.Audit,
		Upstreams: s.opts.Upstreams, Metrics: s.metrics, Live: s.live, Webhook: s.hook.Configured(),
		CanonicalName: canonicalName, Version: s.opts.Version, Logger: s.log,
	})
}

// adminRoutes is everything under /admin/.
func (s *Server) adminRoutes() http.Handler { return s.console.Handler() }

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
func (s *Server) StopStreams() { s.console.StopStreams() }

// Close stops the background work: it ends the event streams, lets the
// ingests in progress record their verdicts (a blob committed without one
// would be scanned again at the next start), leaves the event bus after
// publishing what is queued, writes the queued audit records and lets
// alerts in flight finish, until ctx ends.
func (s *Server) Close(ctx context.Context) {
	s.StopStreams()
	if n := s.gate.Drain(ctx); n > 0 {
		s.log.Warn("stopped with ingests still running; they are redone when asked for", "ingests", n)
	}
	s.bus.Close(ctx)
	s.audit.Close(ctx)
	s.hook.Close(ctx)
}

// canonicalName spells a name's registry as the registry API reads it (any
// case, any of Docker Hub's aliases).
func canonicalName(in string) string {
	if host, rest, ok := strings.Cut(in, "/"); ok && looksLikeHost(host) {
		return canonicalRegistry(host) + "/" + rest
	}
	return in
}
