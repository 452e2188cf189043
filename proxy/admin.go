package proxy

import (
	"context"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/scanner"
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
	Webhook WebhookOptions
}

// operator is the Server's part that serves the operator: the sinks its
// decisions go to, and the admin page. Embedded in Server.
type operator struct {
	events  events.Fanout // what record emits to
	live    *admin.Live
	bus     *events.Bus // nil without an event bus
	audit   auditLog
	hook    *events.Webhook
	console *admin.Console
}

// startAdmin starts the sinks, reloads recent decisions from the audit
// log, and builds the admin page.
func (s *Server) startAdmin() error {
	o := s.opts.Admin
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
	s.live = admin.NewLive()
	// Join the bus before reading the audit log, so that no decision falls
	// between the two; live keeps one that is in both once.
	s.bus = events.JoinBus(o.Bus, s.live.Remote(), s.log, s.metrics.Metrics)
	s.live.LoadFrom(o.Audit, s.log)
	s.events = events.Fanout{events.Log(s.log), s.metrics.Metrics, s.live, s.bus, s.audit.Audit, s.hook}
	s.console = admin.New(admin.Options{
		Token: o.Token, ReadOnlyToken: o.ReadOnlyToken,
		Gate: adminGate{s}, Verdicts: s.opts.Verdicts, Overrides: s.opts.Verdicts, Blobs: s.opts.Blobs, Audit: o.Audit,
		Upstreams: s.opts.Upstreams, Metrics: s.metrics.Metrics, Live: s.live, Webhook: hook.Configured(),
		CanonicalName: canonicalName, Version: s.opts.Version, Logger: s.log,
	})
	return nil
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
	if n := s.flights.drain(ctx) + s.allowFlights.drain(ctx); n > 0 {
		s.log.Warn("stopped with ingests still running; they are redone when asked for", "ingests", n)
	}
	s.bus.Close(ctx)
	s.audit.Close(ctx)
	s.hook.Close(ctx)
}

// adminGate answers what the admin page asks of the gate.
type adminGate struct{ s *Server }

func (g adminGate) Scans() []admin.Scan {
	flights := g.s.Scans()
	out := make([]admin.Scan, len(flights))
	for i, f := range flights {
		out[i] = admin.Scan(f)
	}
	return out
}

func (g adminGate) Scanner() *scanner.Scanner { return g.s.scanner() }

func (g adminGate) ImageBlobs(ctx context.Context, d digest.Digest) ([]admin.Blob, bool) {
	body, mt, err := g.s.opts.Blobs.Manifest(ctx, d)
	if err != nil || (mt != mediaTypeOCIManifest && mt != mediaTypeDockerManifest) {
		return nil, false
	}
	refs, err := g.s.blobsOf(body)
	if err != nil {
		return nil, false
	}
	out := make([]admin.Blob, len(refs))
	for i, r := range refs {
		out[i] = admin.Blob{Digest: r.Digest, Kind: r.Noun(), Context: r.Context}
	}
	return out, true
}

// canonicalName spells a name's registry as the registry API reads it (any
// case, any of Docker Hub's aliases).
func canonicalName(in string) string {
	if host, rest, ok := strings.Cut(in, "/"); ok && looksLikeHost(host) {
		return canonicalRegistry(host) + "/" + rest
	}
	return in
}
