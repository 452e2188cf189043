package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// Options configure a Server. Zero durations and sizes take the defaults
// documented on each field.
type Options struct {
	// The gate's options, passed to it as they are (gate.Options says what
	// each does and its default): the upstreams, the stores and their
	// locks, the scanner and where its rules come from, the policies, the
	// limits, warm. A request for a registry that is not in Upstreams is
	// refused. Metrics, Events and Audit are the server's own: New sets
	// them.
	gate.Options

	// Hold is how long a manifest request waits for its scans before the
	// client is told to come back (429 with Retry-After). Default 25s, under
	// containerd's 30s response-header timeout.
	Hold time.Duration
	// HoldDocker replaces Hold for the Docker Engine, which has no
	// response-header timeout and falls back to Docker Hub on any error, so
	// holding it until the verdict is the better answer. Default 10m.
	HoldDocker time.Duration

	// Mode is how an image is gated for clients that AgentModes does not
	// name: ModeHold (the manifest waits for the image's decision) or
	// ModeStream (the manifest is served early, layers are streamed while
	// they are scanned and their tails held; see stream.go). Empty: hold.
	Mode Mode
	// AgentModes picks the mode by User-Agent prefix, before Mode; the
	// longest matching prefix wins.
	AgentModes map[string]Mode

	// Serve bounds blob downloads to clients (serve.go).
	Serve ServeOptions

	// Admin configures /admin/ (the page and its API), the audit log and
	// the alerts (admin.go).
	Admin AdminOptions

	Registry *prometheus.Registry // metrics go here; nil: a new one
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Hold, 25*time.Second)
	def(&o.HoldDocker, 10*time.Minute)
	def(&o.Serve.StreamWait, 2*time.Second)
	def(&o.Serve.StreamRetryAfter, 5*time.Second)
	def(&o.Serve.WriteTimeout, 60*time.Second)
	if o.Serve.MaxStreams <= 0 {
		o.Serve.MaxStreams = 512
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
}

// Server is pullgate's HTTP side: the read half of the OCI distribution API
// as a pull-through mirror, with the gate in front of every manifest and
// blob it serves.
type Server struct {
	opts       Options
	log        *slog.Logger
	gate       *gate.Gate
	metrics    *events.Metrics
	started    time.Time
	streams    streamSlots // blob downloads in progress (serve.go)
	storeProbe writeProbe  // /readyz's cached write probe

	operator // the operator's window and the sinks decisions go to: admin.go
}

// New checks the options and builds a Server.
func New(opts Options) (*Server, error) {
	if len(opts.Upstreams) == 0 {
		return nil, errors.New("proxy: no upstream registry configured")
	}
	if opts.Blobs == nil || opts.Verdicts == nil || opts.Scanner == nil {
		return nil, errors.New("proxy: blob store, verdict store and scanner are required")
	}
	opts.setDefaults()
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: events.NewMetrics(opts.Registry),
		started: time.Now(),
	}
	if err := s.startSinks(); err != nil {
		return nil, err
	}
	gopts := opts.Options
	gopts.Metrics, gopts.Events, gopts.Audit = s.metrics, s.events, s.audit.Query
	g, err := gate.New(gopts)
	if err != nil {
		return nil, err
	}
	s.gate = g
	if opts.Locks == nil {
		s.log.Warn("running without ingest leases: replicas sharing these stores may fetch and scan a blob twice")
	} else if opts.Releases == nil {
		s.log.Info("running without lease release notices: a replica waiting on another's scan polls for it")
	}
	s.streams = make(streamSlots, opts.Serve.MaxStreams)
	s.storeProbe.every = 5 * time.Second
	s.metrics.ObserveScanner(func() events.Pool { return s.gate.Scanner() })
	s.startConsole()
	return s, nil
}

// ReloadRules asks Run to reload the scanner's rules now (see
// gate.Gate.ReloadRules): the operator's SIGHUP.
func (s *Server) ReloadRules(why string) { s.gate.ReloadRules(why) }

// Run does the server's background work until ctx ends (gate.Gate.Run):
// the rescan at start, eviction, warm, and the removal of uploads left
// behind.
func (s *Server) Run(ctx context.Context) { s.gate.Run(ctx) }

// Handler returns the routes: /v2/ (the registry API), /metrics, /healthz
// and /readyz, and /admin/ unless it has a listener of its own.
func (s *Server) Handler() http.Handler {
	r := s.operationalRouter()
	if !s.opts.Admin.Separate {
		r.Mount("/admin", s.adminRoutes())
	}
	r.Route("/v2", func(r chi.Router) {
		r.Use(apiVersion)
		r.Get("/", s.ping)
		r.Head("/", s.ping)
		r.Get("/*", s.read)
		r.Head("/*", s.read)
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			r.Method(m, "/*", http.HandlerFunc(readOnly))
		}
	})
	return r
}

func apiVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "3")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write([]byte("{}\n"))
}

func readOnly(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, errUnsupported("pullgate is a read-only mirror: "+r.Method+" is not supported"))
}

// read dispatches GET and HEAD under /v2/.
func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v2/_catalog") {
		writeError(w, r, errUnsupported("pullgate does not list repositories"))
		return
	}
	t, err := parseTarget(r, s.configured)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Tag lists too: the tags of a refused repository are its names.
	if d := s.gate.AskName(r.Context(), t.Target, requestEvent(r, t.Image(), t.Digest)); d.Refused() {
		writeError(w, r, refusalError(d))
		return
	}
	switch t.Kind {
	case kindManifest:
		s.manifest(w, r, t)
	case kindBlob:
		s.blob(w, r, t)
	case kindTags:
		s.tagList(w, r, t)
	}
}

func (s *Server) configured(registry string) bool {
	_, ok := s.opts.Upstreams[registry]
	return ok
}

func (s *Server) upstream(t target) *upstream.Registry { return s.opts.Upstreams[t.Registry] }

// requestEvent is the event of a decision about image (at dgst, when
// known) asked for by r; the gate fills in the decision where it makes it.
func requestEvent(r *http.Request, image string, dgst digest.Digest) events.Event {
	return events.Event{Client: clientOf(r), UserAgent: r.UserAgent(), Image: image, Digest: dgst}
}

// clientOf names the client for logs and events.
func clientOf(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// holdFor picks the hold time for a client (see Options.Hold).
func (s *Server) holdFor(r *http.Request) time.Duration {
	if isDockerEngine(r.UserAgent()) {
		return s.opts.HoldDocker
	}
	return s.opts.Hold
}

// Mode is how images are gated for a client.
type Mode string

const (
	ModeHold   Mode = "hold"
	ModeStream Mode = "stream"
)

// modeFor picks the mode for a client: by the longest prefix of its user
// agent in AgentModes, else Mode.
func (s *Server) modeFor(r *http.Request) Mode {
	ua, best, mode := r.UserAgent(), -1, s.opts.Mode
	for prefix, m := range s.opts.AgentModes {
		if len(prefix) > best && strings.HasPrefix(ua, prefix) {
			best, mode = len(prefix), m
		}
	}
	if mode == ModeStream {
		return ModeStream
	}
	return ModeHold
}

// isDockerEngine recognises the Docker daemon's own pulls ("docker/20.10.24
// go/… containerd-client/…"), not Docker's containerd image store, whose
// user agent starts with "containerd/".
func isDockerEngine(ua string) bool {
	return strings.HasPrefix(ua, "docker/")
}

// GatewayHandler serves clients that reach pullgate under a registry's own
// host name (gateway mode: their DNS sends registry-1.docker.io here). A
// Host that names no configured registry is refused rather than answered
// with another registry's content.
func (s *Server) GatewayHandler() http.Handler {
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reg := canonicalRegistry(hostOnly(r.Host)); strings.HasPrefix(r.URL.Path, "/v2/") && !s.configured(reg) {
			writeError(w, r, errDenied(fmt.Sprintf("pullgate: registry %q is not configured here", truncate(reg, 100))))
			return
		}
		h.ServeHTTP(w, r)
	})
}
