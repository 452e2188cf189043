package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// metrics are pullgate's Prometheus series, all in one place.
type metrics struct {
	requests      *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	blocks        *prometheus.CounterVec
	scanSeconds   prometheus.Histogram
	scanBytes     prometheus.Counter
	served        prometheus.Counter
	verdictLookup *prometheus.CounterVec
	tagLookup     *prometheus.CounterVec
	upstreamBlobs *prometheus.CounterVec
	reg           prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
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
	}
	reg.MustRegister(m.requests, m.decisions, m.blocks, m.scanSeconds, m.scanBytes, m.served,
		m.verdictLookup, m.tagLookup, m.upstreamBlobs)
	return m
}

// observeScanner exports the worker pool's state as it is when scraped.
func (m *metrics) observeScanner(current func() *scanner.Scanner) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_scan_workers_busy", Help: "Scanner workers busy."},
			func() float64 { return float64(current().Busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_scan_workers", Help: "Scanner workers."},
			func() float64 { return float64(current().Workers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pullgate_scan_queue_depth", Help: "Files waiting for a scanner worker."},
			func() float64 { return float64(current().QueueDepth()) }),
	)
}

func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		m.requests.WithLabelValues(routeOf(r), strconv.Itoa(ww.Status())).Inc()
	})
}

// routeOf names the route without the repository, to keep label values few.
func routeOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		return "ping"
	case strings.HasPrefix(p, "/v2/"):
		for _, k := range []string{"/manifests/", "/blobs/", "/tags/list"} {
			if strings.Contains(p, k) {
				return k[1 : len(k)-1]
			}
		}
		return "v2-other"
	}
	return p
}

func (m *metrics) decision(ev event) {
	m.decisions.WithLabelValues(ev.Decision).Inc()
	if ev.Decision == "blocked" {
		for _, f := range ev.Findings {
			m.blocks.WithLabelValues(f.Rule).Inc()
		}
	}
}

func (m *metrics) scanned(v storage.Verdict) {
	m.scanSeconds.Observe(v.Duration.Seconds())
	m.scanBytes.Add(float64(v.Bytes))
}

func (m *metrics) servedBytes(n int)        { m.served.Add(float64(n)) }
func (m *metrics) upstreamBlob(name string) { m.upstreamBlobs.WithLabelValues(name).Inc() }
func (m *metrics) verdictCache(hit bool)    { m.verdictLookup.WithLabelValues(hitMiss(hit)).Inc() }
func (m *metrics) tagCache(hit bool)        { m.tagLookup.WithLabelValues(hitMiss(hit)).Inc() }

func hitMiss(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}
