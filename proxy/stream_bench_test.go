package proxy

import (
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/scanner"
)

// BenchmarkColdPull pulls a cold image of two 8 MiB layers from an
// upstream throttled to 16 MB/s per blob, as a client does (the manifest,
// then the config and layers at once), in hold and in stream mode. It
// reports the pull's wall time and the time to the first layer byte.
//
//	go test -run '^$' -bench ColdPull -benchtime 5x ./proxy/
func BenchmarkColdPull(b *testing.B) {
	for _, mode := range []Mode{ModeHold, ModeStream} {
		b.Run(string(mode), func(b *testing.B) {
			var total, ttfb time.Duration
			for range b.N {
				b.StopTimer()
				f := newFixture(b, func(o *Options, _ *scanner.Options) {
					o.Mode = mode
					o.SpoolDir = filepath.Join(b.TempDir(), "spool")
				})
				layers := [][]byte{noisyLayer(8 << 20), noisyLayer(8 << 20)}
				built, err := testregistry.Image{Layers: layers}.Build()
				if err != nil {
					b.Fatal(err)
				}
				f.hub.Push(b, "library/big", "1", testregistry.Image{Layers: layers})
				for _, l := range layers {
					f.hub.Fault(digest.FromBytes(l), testregistry.Fault{BytesPerSecond: 16 << 20})
				}
				b.StartTimer()
				start := time.Now()
				first := pullCold(b, f, built.ConfigDigest, layers)
				total += time.Since(start)
				ttfb += first.Sub(start)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/pull")
			b.ReportMetric(ttfb.Seconds()*1000/float64(b.N), "ms-to-first-layer-byte")
		})
	}
}

// pullCold GETs the manifest, then the config and every layer at once,
// checking each digest; it returns when the first layer byte arrived.
func pullCold(b *testing.B, f *fixture, config digest.Digest, layers [][]byte) time.Time {
	resp, err := f.client.Get(f.url + "/v2/library/big/manifests/1")
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("manifest: %v %v", err, resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var (
		mu    sync.Mutex
		first time.Time
		wg    sync.WaitGroup
	)
	want := []digest.Digest{config}
	for _, l := range layers {
		want = append(want, digest.FromBytes(l))
	}
	for i, d := range want {
		wg.Go(func() {
			resp, err := f.client.Get(f.url + "/v2/library/big/blobs/" + d.String())
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Errorf("blob %s: %v %v", d, err, resp)
				return
			}
			defer resp.Body.Close()
			h := digest.Canonical.Digester()
			buf := make([]byte, 32<<10)
			n, _ := resp.Body.Read(buf)
			if i > 0 {
				mu.Lock()
				if first.IsZero() {
					first = time.Now()
				}
				mu.Unlock()
			}
			h.Hash().Write(buf[:n])
			if _, err := io.Copy(h.Hash(), resp.Body); err != nil || h.Digest() != d {
				b.Errorf("blob %s: %v", d, err)
			}
		})
	}
	wg.Wait()
	return first
}
