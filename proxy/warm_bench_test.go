package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

// BenchmarkWarmManifest asks for one warm image manifest by digest from
// 200 clients at once, through pullgate (filesystem store and embedded
// verdict store, the production defaults) and, when distribution's
// registry binary is found ($PULLGATE_REGISTRY_BIN, else `registry` on the
// PATH), through distribution's proxy mode over the same upstream, in one
// process run so the two are side by side. Each reports requests/s and the
// p50 and p99 latency: go test -run '^$' -bench WarmManifest -benchtime 10s.
func BenchmarkWarmManifest(b *testing.B) {
	hub := testregistry.Start(b)
	img := testregistry.CleanImage("warm")
	for i := range 4 {
		img.Layers = append(img.Layers, testregistry.Layer(testregistry.File{Path: fmt.Sprintf("opt/%d", i), Data: []byte(strings.Repeat("x", 1000+i))}))
	}
	dgst := hub.Push(b, "library/warm", "1", img)
	path := "/v2/library/warm/manifests/" + dgst.String()

	targets := []struct{ name, url string }{{"pullgate", warmPullgate(b, hub)}}
	if bin := registryBinary(); bin != "" {
		targets = append(targets, struct{ name, url string }{"distribution-proxy", distributionProxy(b, bin, hub.URL())})
	}
	for _, tg := range targets {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
		warmPull(b, client, tg.url, "library/warm", path)
		b.Run(tg.name, func(b *testing.B) { loadManifest(b, client, tg.url+path) })
	}
}

// loadManifest sends b.N requests for url from 200 goroutines and reports
// requests/s, p50 and p99.
func loadManifest(b *testing.B, client *http.Client, url string) {
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(max(1, 200/runtime.GOMAXPROCS(0)))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Accept", strings.Join(gate.ManifestTypes, ","))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// warmPull pulls the manifest at path and every blob it names through
// base, so that both mirrors hold the image.
func warmPull(b *testing.B, client *http.Client, base, repo, path string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Accept", strings.Join(gate.ManifestTypes, ","))
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("warm %s: %d %s", base+path, resp.StatusCode, body)
	}
	refs, err := gate.BlobsOf(body, 100)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range refs {
		resp, err := client.Get(base + "/v2/" + repo + "/blobs/" + r.Digest.String())
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != r.Size {
			b.Fatalf("warm blob %s: %d, %d bytes", r.Digest, resp.StatusCode, n)
		}
	}
}

// warmPullgate runs pullgate over hub on a loopback port, with the
// production stores, and returns its URL.
func warmPullgate(b *testing.B, hub *testregistry.Registry) string {
	b.Helper()
	dir := b.TempDir()
	blobs, err := storage.NewFilesystemBlobs(b.Context(), filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(dir, "verdicts.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	up := loopbackUpstream(b, hub.URL())
	srv, err := New(Options{Options: gate.Options{Upstreams: map[string]*upstream.Registry{up.Name(): up}, Blobs: blobs, Verdicts: store,
		Scanner: testScanner(b), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	b.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

func registryBinary() string {
	if p := os.Getenv("PULLGATE_REGISTRY_BIN"); p != "" {
		return p
	}
	p, _ := exec.LookPath("registry")
	return p
}

// distributionProxy runs distribution's registry in proxy mode in front of
// upstream, on a loopback port, and returns its URL.
func distributionProxy(b *testing.B, bin, upstreamURL string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := b.TempDir()
	conf := fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}
http: {addr: %s}
proxy: {remoteurl: %s}
`, filepath.Join(dir, "data"), addr, upstreamURL)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	testsync.WaitFor(b, 10*time.Second, "distribution's registry answers", func() bool {
		resp, err := http.Get(url + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return url
}
