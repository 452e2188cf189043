package bench

import (
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadClients is how many clients ask for one warm manifest at once.
const loadClients = 200

// loadDuration is how long each load runs: $PULLGATE_BENCH_LOAD (a Go
// duration), default 20s.
func loadDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("PULLGATE_BENCH_LOAD")); err == nil && d > 0 {
		return d
	}
	return 20 * time.Second
}

// loadResult is one load run against one mirror.
type loadResult struct {
	ok, failed int
	elapsed    time.Duration
	p50, p99   time.Duration
}

func (r loadResult) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// BenchmarkManifestLoad asks each mirror, warm, for today's image's
// manifest from 200 clients at once, by digest and then by tag, with the
// same in-process generator (keep-alive connections, one per client).
func BenchmarkManifestLoad(b *testing.B) {
	im := requireEnabled(b)
	requireDistribution(b)
	up := startFileRegistry(b)
	small, err := smallFileImage(im)
	if err != nil {
		b.Fatal(err)
	}
	up.add(small)
	onceFor(b, "load", func() {
		mirrors := map[string]*mirror{}
		for _, sys := range systems {
			m := startMirror(b, sys, up)
			defer m.stop()
			if _, err := timedPull(m.url(), small, m); err != nil { // the cold pull that makes it warm
				b.Fatalf("warm %s: %v", sys, err)
			}
			mirrors[sys] = m
		}
		for _, by := range []string{"digest", "tag"} {
			ref := small.tag
			if by == "digest" {
				ref = small.manifestDigest().String()
			}
			for _, sys := range systems {
				r := loadManifest(mirrors[sys].url(), ref, loadClients, loadDuration())
				results.addLoad(by, sys, r)
				b.Logf("manifest by %s, %s: %.0f req/s, p50 %v, p99 %v, %d failed", by, sys, r.perSecond(), r.p50, r.p99, r.failed)
			}
		}
	})
	for _, by := range []string{"digest", "tag"} {
		for _, sys := range systems {
			r := results.load(by, sys)
			b.ReportMetric(r.perSecond(), by+"-"+sys+"-req/s")
			b.ReportMetric(float64(r.p99.Microseconds())/1000, by+"-"+sys+"-p99-ms")
		}
	}
}

// loadManifest runs clients loops of GET manifest ref against base for d.
func loadManifest(base, ref string, clients int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := base + "/v2/" + repo + "/manifests/" + ref
	lat := make([][]time.Duration, clients)
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Accept", manifestAccept)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := loadResult{ok: len(all), failed: int(failed.Load()), elapsed: time.Since(start)}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}
