package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Gate is what the operator's window asks of the gate.
type Gate interface {
	// Scans describes the blobs being fetched and scanned right now.
	Scans() []gate.FlightInfo
	// Scanner is the scanner of the current ruleset.
	Scanner() *scanner.Scanner
	// ImageBlobs lists the blobs of d, config first, when d is an image
	// manifest in the store (false otherwise).
	ImageBlobs(ctx context.Context, d digest.Digest) ([]gate.Ref, bool)
}

// Verdicts is what the operator's window reads of the verdict store.
type Verdicts interface {
	Verdict(ctx context.Context, d digest.Digest, rulesetID string, c storage.Context) (storage.Verdict, error)
	Verdicts(ctx context.Context, d digest.Digest) ([]storage.Verdict, error)
	Ping(ctx context.Context) error
	// Kind names the store ("redis", "embedded") for the status.
	Kind() string
}

// Overrides is the store of the operator's overrides.
type Overrides interface {
	Override(ctx context.Context, subject string) (storage.Override, error)
	Overrides(ctx context.Context) ([]storage.Override, error)
	PutOverride(ctx context.Context, o storage.Override) error
	DeleteOverride(ctx context.Context, subject string) error
}

// Options configure the operator's window. Gate, Verdicts, Overrides,
// Blobs, Metrics and Live are required.
type Options struct {
	// Token grants the admin role (look and change overrides);
	// ReadOnlyToken the read-only one. With neither, /admin is disabled.
	Token         string
	ReadOnlyToken string

	Gate      Gate
	Verdicts  Verdicts
	Overrides Overrides
	Blobs     *storage.Blobs // the store's health and size
	// Audit is the durable log of decisions and override changes; nil:
	// changes are made without a record, and the page shows none.
	Audit     storage.AuditLog
	Upstreams map[string]*upstream.Registry
	Metrics   *events.Metrics
	Live      *Live
	// Webhook says whether alerts are sent (for the status).
	Webhook bool
	// CanonicalName spells a repository name's registry as the registry
	// API reads it ("Registry-1.Docker.IO/x" → "docker.io/x"), so that an
	// override's subject matches requests. nil: names are taken as typed.
	CanonicalName func(string) string

	Version string
	Logger  *slog.Logger
}

// Console serves /admin/.
type Console struct {
	opts        Options
	log         *slog.Logger
	auth        tokens
	logins      loginLimiter
	size        storeSize
	started     time.Time
	streamsDone chan struct{}
	streamsOnce sync.Once
}

// New builds the operator's window.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CanonicalName == nil {
		o.CanonicalName = func(s string) string { return s }
	}
	c := &Console{opts: o, log: o.Logger, auth: newTokens(o.Token, o.ReadOnlyToken),
		started: time.Now(), streamsDone: make(chan struct{})}
	c.size.interval = time.Minute
	return c
}

// StopStreams ends the event streams, which would otherwise keep an
// http.Server's Shutdown waiting; register it with
// http.Server.RegisterOnShutdown.
func (c *Console) StopStreams() { c.streamsOnce.Do(func() { close(c.streamsDone) }) }

// Handler is everything under /admin/; mount it at /admin.
func (c *Console) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(securityHeaders)
	r.Use(c.guard)
	r.Get("/", c.page)
	r.Get("/live", c.fragment)
	r.Handle("/static/*", http.StripPrefix("/admin/", staticFiles))
	r.Post("/overrides", c.formOverride)
	r.Post("/overrides/delete", c.formDelete)
	r.Route("/api", func(r chi.Router) {
		r.Get("/status", c.apiStatus)
		r.Get("/pulls", c.apiPulls)
		r.Get("/blocked", c.apiBlocked)
		r.Get("/scans", c.apiScans)
		r.Get("/overrides", c.apiOverrides)
		r.Post("/overrides", c.apiPutOverride)
		r.Delete("/overrides", c.apiDeleteOverride)
		r.Get("/verdicts/{digest}", c.apiVerdicts)
		r.Get("/audit", c.apiAudit)
		r.Get("/stream", c.apiStream)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			adminError(w, r, http.StatusNotFound, "no such API endpoint")
		})
	})
	return r
}

// queryAudit asks the audit log; with none, the answer is empty.
func (c *Console) queryAudit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditRecord, error) {
	if c.opts.Audit == nil {
		return []storage.AuditRecord{}, nil
	}
	return c.opts.Audit.Query(ctx, q)
}

// appendAudit writes r before returning: an operator's change is refused
// when it cannot be audited.
func (c *Console) appendAudit(ctx context.Context, r storage.AuditRecord) error {
	if c.opts.Audit == nil {
		return nil
	}
	return c.opts.Audit.Append(ctx, r)
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
