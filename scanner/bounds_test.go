package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/samples"
)

// Each test here feeds the scanner a hostile layer and checks that it
// ends with a verdict or a limit/corrupt error, in bounded time and with
// bounded memory. Sizes are chosen so `go test -race` stays quick; set
// PULLGATE_LIMITS_FULL=1 for the full-size runs recorded in
// docs/detection.md (a million files, a 3 GiB file).

func fullSize() bool { return os.Getenv("PULLGATE_LIMITS_FULL") == "1" }

// measure runs fn and returns how long it took, how many bytes it
// allocated on the Go heap, and how far the live heap (as marked by the
// garbage collector, sampled every 10 ms) rose above where it started.
func measure(t *testing.T, fn func()) (time.Duration, uint64, uint64) {
	t.Helper()
	runtime.GC()
	live := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	base := live()
	done := make(chan struct{})
	sampled := make(chan uint64)
	go func() {
		p := base
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				sampled <- p
				return
			case <-tick.C:
				p = max(p, live())
			}
		}
	}()
	start := time.Now()
	fn()
	elapsed := time.Since(start)
	close(done)
	peak := max(<-sampled, live())
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return elapsed, after.TotalAlloc - before.TotalAlloc, peak - min(peak, base)
}

// zstdBomb streams about total bytes of zeros as concatenated zstd
// frames: each frame is 8 MiB of zeros compressed to a few hundred bytes.
func zstdBomb(t testing.TB, total int64) io.Reader {
	frame := zstdBytes(t, make([]byte, 8<<20))
	return &repeatReader{data: frame, n: int(total / (8 << 20))}
}

func TestBombs(t *testing.T) {
	for _, c := range []struct {
		name string
		blob func(t *testing.T) io.Reader
	}{
		{"gzip, 20 GB of zeros", func(t *testing.T) io.Reader { return gzipBomb(t, 20<<30) }},
		{"zstd, 20 GB of zeros", func(t *testing.T) io.Reader { return zstdBomb(t, 20<<30) }},
		{"zstd, a tar of one endless file", func(t *testing.T) io.Reader {
			var hdr bytes.Buffer
			tw := tar.NewWriter(&hdr)
			tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: 1 << 40, Typeflag: tar.TypeReg})
			tw.Flush()
			return io.MultiReader(bytes.NewReader(zstdBytes(t, hdr.Bytes())), zstdBomb(t, 20<<30))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxLayerBytes: 256 << 20, MaxFileBytes: 1 << 40}})
			var err error
			elapsed, alloc, peak := measure(t, func() {
				_, err = s.ScanLayer(context.Background(), c.blob(t), Interactive)
			})
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "MaxLayerBytes") {
				t.Fatalf("err = %v, want ErrLimit naming MaxLayerBytes", err)
			}
			if peak > 128<<20 {
				t.Errorf("live heap grew by %d MiB", peak>>20)
			}
			t.Logf("%v after %v, %d MiB allocated, live heap peak +%d MiB", err, elapsed, alloc>>20, peak>>20)
		})
	}
}

// manyFilesLayer streams a tar of n entries of one byte each, generated
// as it is read.
func manyFilesLayer(t *testing.T, n int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		var err error
		for i := 0; i < n && err == nil; i++ {
			err = tw.WriteHeader(&tar.Header{Name: "d/" + strconv.Itoa(i%1000) + "/f" + strconv.Itoa(i), Mode: 0o644, Size: 1, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
			if err == nil {
				_, err = tw.Write([]byte{'x'})
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { pr.Close() })
	return pr
}

func TestManyTinyFiles(t *testing.T) {
	n := 100_000
	if fullSize() {
		n = 1_000_000
	} else if testing.Short() || raceEnabled {
		n = 20_000
	}
	t.Run("under MaxFiles: scanned", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2})
		// The heap bound below only catches uncapped batches at a million
		// files; the jobs themselves show it at any size: no job holds
		// more than maxBatchItems files, so the files are spread over
		// many jobs (and so over the workers).
		var jobs, most atomic.Int64
		s.testHookJob = func(j *job) {
			jobs.Add(1)
			for n := int64(len(j.items)); ; {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
		}
		var res Result
		var err error
		elapsed, alloc, peak := measure(t, func() {
			res, err = s.ScanLayer(context.Background(), manyFilesLayer(t, n), Interactive)
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Files != int64(n) || len(res.Findings) != 0 {
			t.Fatalf("Files = %d, findings %v; want %d clean", res.Files, res.Findings, n)
		}
		if m := most.Load(); m > maxBatchItems {
			t.Errorf("a job held %d files, more than maxBatchItems %d", m, maxBatchItems)
		}
		if j := jobs.Load(); j < int64(n/maxBatchItems) {
			t.Errorf("%d files went to %d jobs, want at least %d", n, j, n/maxBatchItems)
		}
		if peak > 64<<20 {
			t.Errorf("live heap grew by %d MiB for %d files", peak>>20, n)
		}
		t.Logf("%d files in %v (%.0f files/s), %d MiB allocated, live heap peak +%d MiB", n, elapsed, float64(n)/elapsed.Seconds(), alloc>>20, peak>>20)
	})
	t.Run("over MaxFiles: refused", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxFiles: 1000}})
		_, err := s.ScanLayer(context.Background(), manyFilesLayer(t, n), Interactive)
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "MaxFiles 1000") {
			t.Fatalf("err = %v, want ErrLimit naming MaxFiles 1000", err)
		}
	})
}

// patternReader serves size bytes of a repeating pattern, then tail:
// a large file that is never held in memory.
type patternReader struct {
	pattern []byte
	size    int64 // bytes of pattern still to serve
	tail    []byte
	off     int
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.size > 0 {
		n := 0
		for n < len(b) && p.size > 0 {
			c := copy(b[n:min(len(b), n+int(min(p.size, int64(len(b)))))], p.pattern[p.off:])
			p.off = (p.off + c) % len(p.pattern)
			p.size -= int64(c)
			n += c
		}
		return n, nil
	}
	if len(p.tail) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.tail)
	p.tail = p.tail[n:]
	return n, nil
}

// A multi-GB file is scanned in overlapping windows, streamed: an
// indicator at its very end is found, and memory stays at a few windows.
func TestHugeFileWindows(t *testing.T) {
	size := int64(1 << 30)
	if fullSize() {
		size = 3 << 30
	} else if testing.Short() || raceEnabled {
		size = 256 << 20
	}
	indicator := []byte("\x00donate.v2.xmrig.com:443\x00")
	head := samples.ELF("ordinary")
	total := int64(len(head)) + size + int64(len(indicator))

	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "usr/lib/huge.so", Mode: 0o755, Size: total, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	pad := (512 - total%512) % 512
	layer := io.MultiReader(&hdr, bytes.NewReader(head),
		&patternReader{pattern: samples.Filler(1 << 20), size: size, tail: indicator},
		bytes.NewReader(make([]byte, pad+1024)))

	s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxFileBytes: 4 << 30}})
	var res Result
	var err error
	elapsed, _, peak := measure(t, func() {
		res, err = s.ScanLayer(context.Background(), layer, Interactive)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !hasFinding(res.Blocking(), "MinerXMRig", "/usr/lib/huge.so") {
		t.Errorf("indicator at the end of a %d MiB file not found: %+v", total>>20, res.Findings)
	}
	if res.Bytes != total {
		t.Errorf("Bytes = %d, want %d", res.Bytes, total)
	}
	// Windows are Limits.Window (16 MiB) each, at most min(workers+1, 16)
	// in flight, and pooled (the race detector's pools drop some, hence
	// twice that): far below the size of the file.
	if limit := 2 * uint64(s.slots+2) * uint64(s.limits.Window); peak > limit {
		t.Errorf("heap grew by %d MiB scanning one file, want at most %d MiB", peak>>20, limit>>20)
	}
	t.Logf("%d MiB file in %v (%.0f MB/s), live heap peak +%d MiB", total>>20, elapsed, float64(total)/1e6/elapsed.Seconds(), peak>>20)
}

func TestDeepPaths(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	deep := strings.Repeat("d/", 20_000) + "kdevtmpfsi" // 40 KB of path, PAX-encoded
	layer := tarLayer(t,
		tfile{name: deep, mode: 0o755, data: []byte("x")},
		tfile{name: "../../../../etc/cron.d/x", mode: 0o644, data: []byte("* * * * * root /tmp/x -o pool.example.net:4444 -u " + testWallet + "\n")})
	res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if !hasFinding(res.Findings, "KinsingBinary", "/"+deep) {
		t.Errorf("deep path not scanned by name: %d findings", len(res.Findings))
	}
	if !hasFinding(res.Findings, "MinerCommandLine", "/etc/cron.d/x") {
		t.Errorf("a path climbing out of the root is not cleaned: %+v", res.Findings)
	}

	// A PAX header over archive/tar's 1 MiB bound is refused as corrupt,
	// not buffered.
	// archive/tar's writer will not write one, so the extended header is
	// written as a regular entry and retyped.
	record := "path=" + strings.Repeat("a/", 1<<20) + "\n"
	record = strconv.Itoa(len(record)+8) + " " + record
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "PaxHeaders/x", Mode: 0o644, Size: int64(len(record)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(record))
	tw.WriteHeader(&tar.Header{Name: "x", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
	tw.Write([]byte("x"))
	tw.Close()
	blob := buf.Bytes()
	blob[156] = tar.TypeXHeader
	copy(blob[148:156], "        ")
	var sum int
	for _, c := range blob[:512] {
		sum += int(c)
	}
	copy(blob[148:156], []byte(strconv.FormatInt(int64(sum), 8)+"\x00 "))
	_, err = s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "too long") {
		t.Errorf("2 MiB path: err = %v, want ErrCorrupt (header field too long)", err)
	}
}

// Random damage to the headers of a valid layer always ends in a verdict
// or an error that refuses it, never a hang or a crash.
func TestBrokenHeaders(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2, Limits: Limits{LayerTimeout: 30 * time.Second}})
	var files []tfile
	for i := range 20 {
		files = append(files, reg("etc/f"+strconv.Itoa(i), 0o644, strings.Repeat("data ", 100+i*50)))
	}
	files = append(files, tfile{name: "usr/bin/kworker", mode: 0o755, data: samples.ELF("XMRig/%s")})
	layer := tarLayer(t, files...)
	var headers []int
	for off := 0; off+512 <= len(layer); off += 512 {
		if isTar(layer[off : off+512]) {
			headers = append(headers, off)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	outcomes := map[string]int{}
	for i := range 300 {
		blob := bytes.Clone(layer)
		h := headers[rng.IntN(len(headers))]
		for range 1 + rng.IntN(8) {
			field := []int{0, 100, 124, 136, 148, 156, 257, 345}[rng.IntN(8)] // name, mode, size, mtime, chksum, type, magic, prefix
			blob[h+field+rng.IntN(8)] = byte(rng.IntN(256))
		}
		if i%3 == 0 {
			blob = gzipBytes(t, blob)
		}
		res, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
		switch {
		case err == nil && len(res.Blocking()) > 0:
			outcomes["blocked"]++
		case err == nil:
			outcomes["clean"]++
		case errors.Is(err, ErrCorrupt):
			outcomes["corrupt"]++
		case errors.Is(err, ErrLimit):
			outcomes["limit"]++
		default:
			t.Fatalf("damaged header %d: err = %v, want a verdict, ErrCorrupt or ErrLimit", i, err)
		}
	}
	if outcomes["corrupt"] == 0 {
		t.Errorf("no damage was detected as corrupt: %v", outcomes)
	}
	t.Logf("300 damaged layers in %v: %v", time.Since(start), outcomes)
}
