package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy"
	pggate "github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

const (
	repo = "library/debian"
	tag  = "12-rootfs"

	// throttle is what one blob download from Docker Hub gets across the
	// internet; each response is throttled on its own.
	throttle = 50 << 20
	// concurrency is dockerd's max-concurrent-downloads.
	concurrency = 3
	// fastReps is how many loopback pulls one iteration of a fast
	// benchmark (direct, warm) makes.
	fastReps = 5
)

func TestMain(m *testing.M) {
	code := m.Run()
	if os.Getenv("PULLGATE_BENCH") != "1" {
		if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
			fmt.Fprintln(os.Stderr, "bench: skipped: the pull benchmarks run only with PULLGATE_BENCH=1 (make bench)")
		}
	}
	if !results.empty() {
		printSummary(os.Stdout)
	}
	if image != nil && os.Getenv("PULLGATE_BENCH_IMAGE_DIR") == "" {
		os.RemoveAll(image.dir)
	}
	if pullgatePath != "" {
		os.RemoveAll(filepath.Dir(pullgatePath))
	}
	os.Exit(code)
}

func requireEnabled(b *testing.B) *benchImage {
	b.Helper()
	if os.Getenv("PULLGATE_BENCH") != "1" {
		b.Skip("pull benchmarks need PULLGATE_BENCH=1 (make bench): they build a ~60 MB image and take minutes")
	}
	im, err := loadImage()
	if err != nil {
		b.Fatalf("build the benchmark image: %v", err)
	}
	return im
}

// BenchmarkPull pulls the image directly from the stand-in upstream and
// through pullgate, throttled as across the internet and on loopback.
func BenchmarkPull(b *testing.B) {
	im := requireEnabled(b)
	hub := testregistry.Start(b)
	img := testregistry.Image{Layers: im.layers, Config: ocispec.Image{
		Config: ocispec.ImageConfig{Cmd: []string{"bash"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	}}
	built, err := img.Build()
	if err != nil {
		b.Fatal(err)
	}
	hub.Push(b, repo, tag, img)
	blobs := []digest.Digest{built.ConfigDigest}
	for _, l := range built.Layers {
		blobs = append(blobs, l.Digest)
	}
	sc, err := scanner.New(scanner.Options{Workers: runtime.NumCPU()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })

	size := im.compressed() + int64(len(built.Config))
	direct := func() error { return pullDirect(hub) }
	cold := func() (func() error, func()) {
		g := startGate(b, hub, sc)
		return g.pull, g.close
	}

	throttled := func(on bool) {
		hub.ClearFaults()
		if on {
			for _, d := range blobs {
				hub.Fault(d, testregistry.Fault{BytesPerSecond: throttle})
			}
		}
	}

	b.Run("throttled/direct", func(b *testing.B) {
		throttled(true)
		measure(b, "throttled/direct", size, 1, nil, direct)
	})
	b.Run("throttled/pullgate-cold", func(b *testing.B) {
		throttled(true)
		measure(b, "throttled/pullgate-cold", size, 1, cold, nil)
	})
	b.Run("loopback/gunzip", func(b *testing.B) {
		throttled(false)
		measure(b, "loopback/gunzip", size, 1, nil, func() error { return gunzipAll(im.layers) })
	})
	b.Run("loopback/gunzip-cli", func(b *testing.B) {
		files := layerFiles(b, im.layers)
		measure(b, "loopback/gunzip-cli", size, 1, nil, func() error { return gunzipCLI(files) })
	})
	b.Run("loopback/pullgate-cold", func(b *testing.B) {
		throttled(false)
		measure(b, "loopback/pullgate-cold", size, 1, cold, nil)
	})
	b.Run("loopback/direct", func(b *testing.B) {
		throttled(false)
		measure(b, "loopback/direct", size, fastReps, nil, direct)
	})
	b.Run("loopback/pullgate-warm", func(b *testing.B) {
		throttled(false)
		g := startGate(b, hub, sc)
		defer g.close()
		if err := g.pull(); err != nil { // the cold pull that fills the caches
			b.Fatal(err)
		}
		measure(b, "loopback/pullgate-warm", size, fastReps, nil, g.pull)
	})
}

// BenchmarkScan is the scanner alone on the image's layers, all of them at
// once as the gate scans them: "tar" feeds the uncompressed tars (walk and
// YARA only), "gzip" the layers as pulled (decompression in the walker too).
// MB/s counts uncompressed layer content.
func BenchmarkScan(b *testing.B) {
	im := requireEnabled(b)
	sc, err := scanner.New(scanner.Options{Workers: runtime.NumCPU()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })
	for _, in := range []struct {
		name   string
		layers [][]byte
	}{{"tar", im.tars}, {"gzip", im.layers}} {
		b.Run(in.name, func(b *testing.B) {
			measure(b, "scan/"+in.name, im.uncompressed(), 1, nil, func() error {
				var g errgroup.Group
				for _, l := range in.layers {
					g.Go(func() error {
						res, err := sc.ScanLayer(context.Background(), bytes.NewReader(l), scanner.Interactive)
						if err == nil && len(res.Findings) > 0 {
							err = fmt.Errorf("host layer has findings: %+v", res.Findings)
						}
						return err
					})
				}
				return g.Wait()
			})
			perWorker := results.get("scan/"+in.name).mbps() / float64(sc.Workers())
			b.ReportMetric(perWorker, "MB/s/worker")
		})
	}
}

// measure times b.N iterations of reps runs each. setup, if given, runs
// untimed before each iteration and returns the run and its teardown;
// otherwise run is used as is. Fast runs (a warm pull takes tens of
// milliseconds) are repeated reps times per iteration so that one sample is
// not one scheduler hiccup. It reports the median seconds per run over the
// iterations and MB/s of size bytes, and records them for the summary.
func measure(b *testing.B, name string, size int64, reps int, setup func() (func() error, func()), run func() error) {
	b.Helper()
	defer profile(b, name)()
	samples := make([]time.Duration, 0, b.N)
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		do, teardown := run, func() {}
		if setup != nil {
			do, teardown = setup()
		}
		runtime.GC()
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime()
		var err error
		for i := 0; i < reps && err == nil; i++ {
			err = do()
		}
		samples = append(samples, time.Since(start)/time.Duration(reps))
		cpu += cpuTime() - cpu0
		b.StopTimer()
		teardown()
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	b.Logf("%s: %d samples (s/run): %v", name, len(samples), seconds(samples))
	slices.Sort(samples)
	r := result{perRun: samples[len(samples)/2], bytes: size, cpu: cpu / time.Duration(b.N*reps)}
	results.set(name, r)
	b.ReportMetric(r.perRun.Seconds(), "s/pull")
	b.ReportMetric(r.mbps(), "MB/s")
	b.ReportMetric(r.cpu.Seconds(), "cpu-s/pull")
}

// cpuTime is the CPU time (user and system) this process has used: the
// stand-in upstream and the client included, other processes not, so it
// holds steadier than wall time on a busy machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func seconds(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%.3f", d.Seconds())
	}
	return out
}

// profile writes a CPU profile of one benchmark's runs (setups included,
// image building not) to $PULLGATE_BENCH_PROFILE/<name>.pprof, so that
// where a pull's time goes can be read without the noise of the rest:
// go tool pprof -top bench.test <file>.
func profile(b *testing.B, name string) (stop func()) {
	dir := os.Getenv("PULLGATE_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+".pprof")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Logf("no profile for %s: %v", name, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// gate is a fresh pullgate with production defaults: a filesystem blob
// store and the embedded (bolt) verdict store under a new directory, in
// front of hub.
type gate struct {
	url   string
	close func()
}

func startGate(b *testing.B, hub *testregistry.Registry, sc *scanner.Scanner) *gate {
	b.Helper()
	dir, err := os.MkdirTemp("", "pullgate-bench-gate-")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	blobs, err := storage.NewFilesystemBlobs(ctx, filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	verdicts, err := bolt.Open(filepath.Join(dir, "verdicts.db"))
	if err != nil {
		b.Fatal(err)
	}
	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: hub.URL(),
		// The stand-in's CDN listens on another loopback address.
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := proxy.New(proxy.Options{Options: pggate.Options{
		Upstreams: map[string]*upstream.Registry{"docker.io": up},
		Blobs:     blobs,
		Verdicts:  verdicts,
		Scanner:   sc,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	g := &gate{url: ts.URL}
	g.close = func() {
		ts.Close()
		verdicts.Close()
		os.RemoveAll(dir)
	}
	return g
}

// pull is an anonymous client pull through the gate.
func (g *gate) pull() error {
	tr := clientTransport()
	defer tr.CloseIdleConnections()
	_, err := pull(context.Background(), &http.Client{Transport: tr}, g.url, repo, tag)
	return err
}

// pullDirect is a client pull from the upstream itself, with its token
// dance (a fresh client per pull, as a daemon's pull starts without a token)
// and its redirects to the CDN.
func pullDirect(hub *testregistry.Registry) error {
	tr := clientTransport()
	defer tr.CloseIdleConnections()
	c := &auth.Client{
		Client: &http.Client{Transport: tr},
		Header: http.Header{"User-Agent": {"pullgate-bench"}},
		Cache:  auth.NewCache(),
	}
	ctx := auth.AppendRepositoryScope(context.Background(), registry.Reference{Registry: hub.Host(), Repository: repo}, auth.ActionPull)
	_, err := pull(ctx, c, hub.URL(), repo, tag)
	return err
}

// gunzipAll decompresses every layer to io.Discard, concurrency at a time
// like the client: the floor for anything that looks at layer content.
func gunzipAll(layers [][]byte) error {
	var g errgroup.Group
	g.SetLimit(concurrency)
	for _, l := range layers {
		g.Go(func() error {
			zr, err := gzip.NewReader(bytes.NewReader(l))
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, zr)
			return err
		})
	}
	return g.Wait()
}

// layerFiles writes the layers to files once, for the gzip command.
func layerFiles(b *testing.B, layers [][]byte) []string {
	dir := b.TempDir()
	var out []string
	for i, l := range layers {
		p := filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i))
		if err := os.WriteFile(p, l, 0o600); err != nil {
			b.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// gunzipCLI runs Debian's `gzip -dc` on every layer, concurrency at a
// time like the client: the plain gunzip, output sent to /dev/null. (Not
// io.Discard: that makes Go copy all of gzip's output through a pipe into
// this process, 14% more wall time, which flattered every ratio against
// this floor until 30 November.)
func gunzipCLI(files []string) error {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s for gzip's output: %w", os.DevNull, err)
	}
	defer null.Close()
	var g errgroup.Group
	g.SetLimit(concurrency)
	for _, f := range files {
		g.Go(func() error {
			cmd := exec.Command("gzip", "-dc", f)
			cmd.Stdout = null
			return cmd.Run()
		})
	}
	return g.Wait()
}

// result is one benchmark's figure, kept for the summary.
type result struct {
	perRun time.Duration // median wall time of one run
	bytes  int64
	cpu    time.Duration // mean CPU time of one run, whole process
}

func (r result) mbps() float64 {
	if r.perRun <= 0 {
		return 0
	}
	return mb(r.bytes) / r.perRun.Seconds()
}
