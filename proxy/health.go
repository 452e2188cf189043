package proxy

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pullgate/pullgate/storage"
)

// operationalRouter is a router with the middleware every listener uses and
// the routes every listener serves: /healthz, /readyz and /metrics.
func (s *Server) operationalRouter() chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(s.metrics.Middleware)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", s.ready)
	r.Handle("/metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	return r
}

// ready answers 200 when the store, the verdict store and the rules work.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var problems []string
	if err := s.opts.Blobs.Ping(ctx); err != nil {
		problems = append(problems, "blob store: "+err.Error())
	} else if err := s.storeProbe.check(ctx, s.opts.Blobs); err != nil {
		problems = append(problems, "blob store cannot write: "+err.Error())
	}
	if err := s.opts.Verdicts.Ping(ctx); err != nil {
		problems = append(problems, "verdict store: "+err.Error())
	}
	if sc := s.gate.Scanner(); sc == nil || sc.RuleCount() == 0 {
		problems = append(problems, "scanner: no rules loaded")
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		http.Error(w, strings.Join(problems, "\n"), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// writeProbe runs the store's write probe for /readyz at most once every
// few seconds, so that a readiness check polled often stays cheap.
type writeProbe struct {
	mu    sync.Mutex
	every time.Duration
	at    time.Time
	err   error
}

func (p *writeProbe) check(ctx context.Context, b *storage.Blobs) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < p.every {
		return p.err
	}
	p.err = b.ProbeWrite(ctx)
	p.at = time.Now()
	return p.err
}
