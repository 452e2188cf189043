package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/pullgate/pullgate/scanner"
)

// The detection benchmarks (docs/detection.md, "Throughput"): the default
// ruleset on the benchmark image's root filesystem, side by side with the
// tools that bound it, in one run.
//
//   - BenchmarkRulesVsYaraCLI: YARA scanning per worker, pullgate's one
//     worker over files already in memory against Debian's yara command
//     (yara -p 1 -N, the same rule sources and externals) over the same
//     files extracted to disk (page cache warm).
//   - BenchmarkLayerVsGunzip: each layer from its gzip blob to the
//     verdict, every worker busy, against gzip -dc of the same blob.

// yaraRules writes the default rule sources into dir, for the yara CLI.
func yaraRules(b *testing.B, dir string) []string {
	b.Helper()
	srcs, err := filepath.Glob("../scanner/rules/*.yar")
	if err != nil || len(srcs) == 0 {
		b.Fatalf("default rule sources not found: %v", err)
	}
	slices.Sort(srcs) // common.yar first, as the scanner compiles them
	return srcs
}

// extract writes the regular files of tars under dir and returns their
// total size.
func extract(b *testing.B, tars [][]byte, dir string) (int64, int) {
	b.Helper()
	var total int64
	var files int
	for i, t := range tars {
		tr := tar.NewReader(bytes.NewReader(t))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			p := filepath.Join(dir, fmt.Sprint(i), filepath.FromSlash(filepath.Clean("/"+h.Name)))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(f, tr)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			total += n
			files++
		}
	}
	return total, files
}

// timeCmd runs a command reps times and returns the median wall time.
func timeCmd(b *testing.B, reps int, name string, args ...string) time.Duration {
	b.Helper()
	var ds []time.Duration
	for range reps {
		cmd := exec.Command(name, args...)
		var stderr bytes.Buffer
		cmd.Stdout = io.Discard
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v: %s", name, err, stderr.String())
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func BenchmarkRulesVsYaraCLI(b *testing.B) {
	im := requireEnabled(b)
	if _, err := exec.LookPath("yara"); err != nil {
		b.Skip("Debian's yara command is needed (make deps installs it)")
	}
	dir := b.TempDir()
	size, files := extract(b, im.tars, filepath.Join(dir, "rootfs"))
	rules := yaraRules(b, dir)

	sc, err := scanner.New(scanner.Options{Workers: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })
	var scanned int64
	b.Run("pullgate-1-worker", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			scanned = 0
			for _, t := range im.tars {
				res, err := sc.ScanLayer(context.Background(), bytes.NewReader(t), scanner.Interactive)
				if err != nil {
					b.Fatal(err)
				}
				scanned += res.Bytes
			}
		}
	})
	start := time.Now()
	const reps = 3
	for range reps {
		for _, t := range im.tars {
			if _, err := sc.ScanLayer(context.Background(), bytes.NewReader(t), scanner.Interactive); err != nil {
				b.Fatal(err)
			}
		}
	}
	ours := time.Since(start) / reps

	externals := []string{"-d", "filepath=", "-d", "filename=", "-d", "extension=", "-d", "executable=true", "-d", "context=layer"}
	args := append([]string{"-p", "1", "-N", "-r"}, externals...)
	cli := func(extra ...string) time.Duration {
		a := append(append(slices.Clone(args), extra...), rules...)
		a = append(a, filepath.Join(dir, "rootfs"))
		timeCmd(b, 1, "yara", a...) // warm the page cache
		return timeCmd(b, reps, "yara", a...)
	}
	plain, fast := cli(), cli("-f")
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	results.note("rules, %d files, %.0f MB in memory vs on disk: pullgate 1 worker %.0f MB/s (%.2fs); yara -p 1 -N %.0f MB/s (%.2fs); yara -p 1 -N -f %.0f MB/s (%.2fs): %.2fx yara's speed (target at least 1)",
		files, float64(size)/1e6, mbps(ours), ours.Seconds(), mbps(plain), plain.Seconds(), mbps(fast), fast.Seconds(), plain.Seconds()/ours.Seconds())
	b.ReportMetric(mbps(ours), "pullgate-MB/s/worker")
	b.ReportMetric(mbps(plain), "yara-cli-MB/s")
	b.ReportMetric(mbps(fast), "yara-cli-fast-MB/s")
	b.ReportMetric(plain.Seconds()/ours.Seconds(), "speedup-vs-yara")
	if scanned != size {
		b.Logf("note: scanner counted %d bytes, extraction %d", scanned, size)
	}
}

func BenchmarkLayerVsGunzip(b *testing.B) {
	im := requireEnabled(b)
	if _, err := exec.LookPath("gzip"); err != nil {
		b.Skip("gzip is needed")
	}
	dir := b.TempDir()
	sc, err := scanner.New(scanner.Options{Workers: runtime.NumCPU()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })
	const reps = 5
	var ourTotal, gzTotal time.Duration
	for i, l := range im.layers {
		p := filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i))
		if err := os.WriteFile(p, l, 0o644); err != nil {
			b.Fatal(err)
		}
		gz := timeCmd(b, reps, "sh", "-c", "gzip -dc "+p+" > /dev/null")
		var ds []time.Duration
		for range reps {
			start := time.Now()
			if _, err := sc.ScanLayer(context.Background(), bytes.NewReader(l), scanner.Interactive); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		ours := ds[len(ds)/2]
		ourTotal += ours
		gzTotal += gz
		b.Logf("layer %d (%s): %.1f MB gzip, %.1f MB tar: pullgate %.3fs, gzip -dc %.3fs: %.2fx",
			i, imagePlan[i].name, float64(len(l))/1e6, float64(len(im.tars[i]))/1e6, ours.Seconds(), gz.Seconds(), ours.Seconds()/gz.Seconds())
	}
	results.note("layers from gzip blob to verdict, %d workers: pullgate %.3fs, gzip -dc %.3fs: %.2fx (target at most 1.3x)", sc.Workers(), ourTotal.Seconds(), gzTotal.Seconds(), ourTotal.Seconds()/gzTotal.Seconds())
	b.ReportMetric(ourTotal.Seconds()/gzTotal.Seconds(), "x-gzip-dc")
	b.Run("pullgate", func(b *testing.B) {
		b.SetBytes(im.uncompressed())
		for b.Loop() {
			for _, l := range im.layers {
				if _, err := sc.ScanLayer(context.Background(), bytes.NewReader(l), scanner.Interactive); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
