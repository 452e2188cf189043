package bench

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"
)

// The memory condition: ten clients pull, at once, a cold image whose one
// layer is 4 GiB, from an upstream on loopback (not throttled), and
// pullgate's peak resident memory (VmHWM) is read when they are done.

const (
	memoryClients = 10
	hugeFiles     = 64
	hugeFileBytes = 64 << 20 // hugeFiles × hugeFileBytes = 4 GiB
)

type memoryResult struct {
	peak int64 // bytes
	wall time.Duration
}

// BenchmarkMemory measures pullgate's peak RSS under the memory condition,
// in each gate mode.
func BenchmarkMemory(b *testing.B) {
	if os.Getenv("PULLGATE_BENCH") != "1" {
		b.Skip("pull benchmarks need PULLGATE_BENCH=1 (make bench)")
	}
	huge, err := hugeFileImage()
	if err != nil {
		b.Fatalf("build the 4 GiB layer: %v", err)
	}
	results.setImage("huge", huge)
	up := startFileRegistry(b)
	up.add(huge)
	modes := []string{sysHold, sysStream}
	if !gateModeSupported(b) {
		modes = modes[:1] // the same program twice: the slowest condition is not run for nothing
	}
	onceFor(b, "memory", func() {
		for _, sys := range modes {
			m := startMirror(b, sys, up)
			start := time.Now()
			var g errgroup.Group
			for range memoryClients {
				g.Go(func() error {
					tr := clientTransport()
					defer tr.CloseIdleConnections()
					_, err := pull(context.Background(), &http.Client{Transport: tr}, m.url(), repo, huge.tag)
					return err
				})
			}
			err := g.Wait()
			wall := time.Since(start)
			peak, perr := m.peakRSS()
			m.stop()
			if err != nil {
				b.Fatalf("%d clients pulling the 4 GiB layer through %s: %v", memoryClients, sys, err)
			}
			if perr != nil {
				b.Fatal(perr)
			}
			results.setMemory(sys, memoryResult{peak: peak, wall: wall})
			b.Logf("%s: VmHWM %.0f MiB, %d pulls in %.1fs", sys, float64(peak)/(1<<20), memoryClients, wall.Seconds())
		}
	})
	for _, sys := range modes {
		b.ReportMetric(float64(results.memory(sys).peak)/(1<<20), sys+"-VmHWM-MiB")
	}
}

// hugeFileImage builds (once, cached) an image of one 4 GiB layer:
// hugeFiles files of seeded pseudo-random bytes, gzip without compression
// (random bytes do not compress; the stored blocks keep the blob 4 GiB and
// the build fast). The same seed always gives the same bytes.
func hugeFileImage() (*fileImage, error) {
	return cachedImage(filepath.Join(cacheDir(), "huge"), "huge", "huge", 1, func(_ int, w io.Writer) error {
		zw, err := gzip.NewWriterLevel(w, gzip.NoCompression)
		if err != nil {
			return err
		}
		tw := tar.NewWriter(zw)
		rng := rand.NewChaCha8([32]byte{'p', 'u', 'l', 'l', 'g', 'a', 't', 'e'})
		buf := make([]byte, 1<<20)
		for i := range hugeFiles {
			hdr := &tar.Header{Name: fmt.Sprintf("data/part-%02d.bin", i), Mode: 0o644, Size: hugeFileBytes,
				Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX, Uname: "root", Gname: "root"}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			for range hugeFileBytes / len(buf) {
				rng.Read(buf)
				if _, err := tw.Write(buf); err != nil {
					return err
				}
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
}
