package events

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// Metrics are pullgate's Prometheus series, all in one place. As a Sink
// it counts decisions; the gate, the proxy and the admin page count the
// rest through its methods.
type Metrics struct {
	requests      *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	blocks        *prometheus.CounterVec
	scanSeconds   prometheus.Histogram
	scanBytes     prometheus.Counter
	served        prometheus.Counter
	verdictLookup *prometheus.CounterVec
	tagLookup     *prometheus.CounterVec
	upstreamBlobs *prometheus.CounterVec
	evictedBlobs  prometheus.Counter
	evictedBytes  prometheus.Counter
	upstreamErrs  *prometheus.CounterVec
	audit         *prometheus.CounterVec
	webhooks      *prometheus.CounterVec
	eventBus      *prometheus.CounterVec
	adminAuth     prometheus.Counter
	overrides     *prometheus.CounterVec
	reg           prometheus.Registerer

	// For the admin page, which reads them without scraping.
	hits, misses, servedTotal atomic.Int64

	// upstreams are the configured registry names, the only values the
	// upstream label takes (set once by ObserveUpstreams, before serving).
	upstreams map[string]bool
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_pulls_total", Help: "Pull decisions by outcome.",
		}, []string{"decision"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_blocks_total", Help: "Refused pulls by the rule that refused them.",
		}, []string{"rule"}),
		scanSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pullgate_scan_duration_seconds", Help: "Time to fetch and scan one blob.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}),
		scanBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_scan_bytes_total", Help: "Uncompressed bytes scanned.",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_served_bytes_total", Help: "Bytes of manifests and blobs served to clients.",
		}),
		verdictLookup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_verdict_cache_total", Help: "Verdict look-ups by result (hit: no scan needed).",
		}, []string{"result"}),
		tagLookup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_tag_cache_total", Help: "Tag resolutions by result (hit: no upstream HEAD).",
		}, []string{"result"}),
		upstreamBlobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_upstream_blob_fetches_total", Help: "Blobs fetched from upstream, by registry.",
		}, []string{"upstream"}),
		upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_upstream_errors_total", Help: "Pulls refused because an upstream failed, by registry.",
		}, []string{"upstream"}),
		audit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_audit_log_errors_total", Help: "Audit records not written, by reason (failed, dropped: queue full).",
		}, []string{"reason"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_webhook_deliveries_total", Help: "Alert deliveries by result (delivered, retried, failed, dropped).",
		}, []string{"result"}),
		eventBus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_event_bus_errors_total",
			Help: "Decisions not shared with the other replicas' admin pages, by reason (failed, dropped: queue full, malformed: received).",
		}, []string{"reason"}),
		adminAuth: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_admin_auth_failures_total", Help: "Admin requests with a wrong token.",
		}),
		overrides: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_override_changes_total", Help: "Operator override changes by action (allow, deny, remove).",
		}, []string{"action"}),
	}
	m.evictedBlobs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pullgate_store_evicted_blobs_total", Help: "Blobs removed from the store to keep it within its size.",
	})
	m.evictedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pullgate_store_evicted_bytes_total", Help: "Bytes removed from the store to keep it within its size.",
	})
	reg.MustRegister(m.evictedBlobs, m.evictedBytes)
	reg.MustRegister(m.requests, m.decisions, m.blocks, m.scanSeconds, m.scanBytes, m.served,
		m.verdictLookup, m.tagLookup, m.upstreamBlobs, m.upstreamErrs, m.audit, m.webhooks, m.eventBus, m.adminAuth, m.overrides)
	return m
}

// ObserveUpstreams exports the pull budget each upstream last reported
// (Docker Hub's ratelimit headers); a registry that never sent one has no
// series.
func (m *Metrics) ObserveUpstreams(ups map[string]*upstream.Registry) {
	m.upstreams = make(map[string]bool, len(ups))
	for name, up := range ups {
		m.upstreams[name] = true
		labels := prometheus.Labels{"upstream": name}
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_upstream_ratelimit_remaining",
				Help: "Pulls left in the upstream's rate-limit window, as last reported (-1: never reported).", ConstLabels: labels},
				func() float64 { return rateLimitValue(up, false) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_upstream_ratelimit_limit",
				Help: "Pulls allowed per upstream rate-limit window, as last reported (-1: never reported).", ConstLabels: labels},
				func() float64 { return rateLimitValue(up, true) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_upstream_requests_in_flight",
				Help: "Requests open to the upstream (bodies included).", ConstLabels: labels},
				func() float64 { return float64(up.Load().InFlight) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_upstream_requests_waiting",
				Help: "Requests queued for a connection slot to the upstream (max_concurrent reached).", ConstLabels: labels},
				func() float64 { return float64(up.Load().Waiting) }),
		)
	}
}

func rateLimitValue(up *upstream.Registry, limit bool) float64 {
	rl := up.RateLimit()
	switch {
	case rl.Seen.IsZero():
		return -1
	case limit:
		return float64(rl.Limit)
	}
	return float64(rl.Remaining)
}

// Pool is what the metrics read of the scanner's worker pool.
type Pool interface {
	Busy() int
	Workers() int
	QueueDepth() int
}

// ObserveScanner exports the worker pool's state as it is when scraped;
// current is the pool of the ruleset in use.
func (m *Metrics) ObserveScanner(current func() Pool) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_scan_workers_busy", Help: "Scanner workers busy."},
			func() float64 { return float64(current().Busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_scan_workers", Help: "Scanner workers."},
			func() float64 { return float64(current().Workers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_scan_queue_depth", Help: "Files waiting for a scanner worker."},
			func() float64 { return float64(current().QueueDepth()) }),
	)
}

// Middleware counts requests by route and status code.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		m.requests.WithLabelValues(Route(r), strconv.Itoa(ww.Status())).Inc()
	})
}

// Route names the route from a fixed set, never from the request's own
// text: a label value made of a path would let anyone add a series per
// request (a made-up path, a repository name, an admin endpoint that does
// not exist).
func Route(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		return "ping"
	case strings.HasPrefix(p, "/admin/api/"):
		name, _, _ := strings.Cut(strings.TrimPrefix(p, "/admin/api/"), "/")
		if adminAPIRoutes[name] {
			return "admin-api-" + name
		}
		return "admin-api-other"
	case p == "/admin" || strings.HasPrefix(p, "/admin/"):
		return "admin"
	case strings.HasPrefix(p, "/v2/"):
		for _, k := range []string{"/manifests/", "/blobs/", "/tags/list"} {
			if strings.Contains(p, k) {
				return k[1 : len(k)-1]
			}
		}
		return "v2-other"
	case p == "/metrics", p == "/healthz", p == "/readyz":
		return p[1:]
	}
	return "other"
}

// adminAPIRoutes are the endpoints under /admin/api/ (the admin
// package's routes; a test there checks that they agree).
var adminAPIRoutes = map[string]bool{
	"status": true, "pulls": true, "blocked": true, "scans": true,
	"overrides": true, "verdicts": true, "audit": true, "stream": true,
}

// Emit counts a decision: by outcome, an upstream failure by registry, a
// block by each rule that made it.
func (m *Metrics) Emit(ev Event) {
	m.decisions.WithLabelValues(ev.Decision.String()).Inc()
	if ev.Decision == verdict.UpstreamFailed {
		m.upstreamErrs.WithLabelValues(m.upstreamLabel(ev.Registry())).Inc()
	}
	if ev.Decision == verdict.Blocked {
		for _, f := range ev.Findings {
			m.blocks.WithLabelValues(f.Rule).Inc()
		}
	}
}

// Scanned observes one blob's scan.
func (m *Metrics) Scanned(v storage.Verdict) {
	m.scanSeconds.Observe(v.Duration.Seconds())
	m.scanBytes.Add(float64(v.Bytes))
}

// ServedBytes counts bytes of manifests and blobs sent to clients.
func (m *Metrics) ServedBytes(n int) {
	m.served.Add(float64(n))
	m.servedTotal.Add(int64(n))
}

// VerdictCache counts a verdict look-up (hit: no scan needed).
func (m *Metrics) VerdictCache(hit bool) {
	m.verdictLookup.WithLabelValues(hitMiss(hit)).Inc()
	if hit {
		m.hits.Add(1)
	} else {
		m.misses.Add(1)
	}
}

// upstreamLabel keeps the upstream label to the configured registries: an
// event's image comes from the request.
func (m *Metrics) upstreamLabel(name string) string {
	if m.upstreams[name] {
		return name
	}
	return "other"
}

// UpstreamBlob counts a blob fetched from the upstream name.
func (m *Metrics) UpstreamBlob(name string) {
	m.upstreamBlobs.WithLabelValues(m.upstreamLabel(name)).Inc()
}

// TagCache counts a tag resolution (hit: no upstream HEAD).
func (m *Metrics) TagCache(hit bool) { m.tagLookup.WithLabelValues(hitMiss(hit)).Inc() }

// AuditFailed counts an audit record the log refused.
func (m *Metrics) AuditFailed() { m.audit.WithLabelValues("failed").Inc() }

// AuditDropped counts an audit record dropped with its queue full.
func (m *Metrics) AuditDropped() { m.audit.WithLabelValues("dropped").Inc() }

// Webhook counts an alert delivery by result (delivered, retried,
// failed, dropped, kept).
func (m *Metrics) Webhook(result string) { m.webhooks.WithLabelValues(result).Inc() }

// EventBusError counts a decision not shared, by reason.
func (m *Metrics) EventBusError(reason string) { m.eventBus.WithLabelValues(reason).Inc() }

// AdminAuthFailed counts an admin request with a wrong token.
func (m *Metrics) AdminAuthFailed() { m.adminAuth.Inc() }

// OverrideChanged counts an override change by action.
func (m *Metrics) OverrideChanged(action string) { m.overrides.WithLabelValues(action).Inc() }

func hitMiss(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}

// Evicted counts blobs removed from the store to keep it within its size.
func (m *Metrics) Evicted(blobs int, bytes int64) {
	m.evictedBlobs.Add(float64(blobs))
	m.evictedBytes.Add(float64(bytes))
}

// Served is the bytes served since start, for the admin page.
func (m *Metrics) Served() int64 { return m.servedTotal.Load() }

// VerdictCacheCounts are the verdict look-ups since start that needed no
// scan (hits) and that did (misses), for the admin page.
func (m *Metrics) VerdictCacheCounts() (hits, misses int64) { return m.hits.Load(), m.misses.Load() }
