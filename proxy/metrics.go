package proxy

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// metrics is events.Metrics under the names the registry handlers and the
// gate call it by.
type metrics struct{ *events.Metrics }

func newMetrics(reg prometheus.Registerer) *metrics { return &metrics{events.NewMetrics(reg)} }

func (m *metrics) verdictCache(hit bool)                  { m.VerdictCache(hit) }
func (m *metrics) tagCache(hit bool)                      { m.TagCache(hit) }
func (m *metrics) scanned(v storage.Verdict)              { m.Scanned(v) }
func (m *metrics) servedBytes(n int)                      { m.ServedBytes(n) }
func (m *metrics) upstreamBlob(name string)               { m.UpstreamBlob(name) }
func (m *metrics) evicted(blobs int, bytes int64)         { m.Evicted(blobs, bytes) }
func (m *metrics) middleware(h http.Handler) http.Handler { return m.Middleware(h) }

func (m *metrics) observeScanner(current func() *scanner.Scanner) {
	m.ObserveScanner(func() events.Pool { return current() })
}
