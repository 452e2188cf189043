package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/pullgate/pullgate/internal/samples"
)

// repeatReader serves data n times over without holding more than one copy.
type repeatReader struct {
	data []byte
	n    int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	c := copy(p, r.data[r.off:])
	r.off += c
	if r.off == len(r.data) {
		r.off = 0
		r.n--
	}
	return c, nil
}

// gzipBomb streams about total bytes of zeros as concatenated gzip members,
// generated on the fly: each member is 8 MiB of zeros compressed to ~8 KiB.
func gzipBomb(t testing.TB, total int64) io.Reader {
	member := gzipBytes(t, make([]byte, 8<<20))
	return &repeatReader{data: member, n: int(total / (8 << 20))}
}

// hugeFileTar is a tar header announcing one file of size bytes, followed
// by a stream of zeros for its content, gzip-compressed on the fly.
func hugeFileTar(t testing.TB, size int64) io.Reader {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	pr, pw := io.Pipe()
	go func() {
		zw := gzip.NewWriter(pw)
		_, err := zw.Write(hdr.Bytes())
		zeros := make([]byte, 1<<20)
		for err == nil {
			_, err = zw.Write(zeros)
		}
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { pr.Close() })
	return pr
}

func TestLimits(t *testing.T) {
	manyFiles := make([]tfile, 11)
	for i := range manyFiles {
		manyFiles[i] = reg(strings.Repeat("d/", i)+"f", 0o644, "x")
	}
	cases := []struct {
		name    string
		limits  Limits
		blob    func(t *testing.T) io.Reader
		wantMsg string
		scan    func(*Scanner) func(context.Context, io.Reader, Prioritizer) (Result, error) // default ScanLayer
	}{
		{
			name:    "gzip bomb, 20 GB of zeros",
			limits:  Limits{MaxLayerBytes: 64 << 20},
			blob:    func(t *testing.T) io.Reader { return gzipBomb(t, 20<<30) },
			wantMsg: "MaxLayerBytes 67108864",
		},
		{
			name:    "one huge file over MaxFileBytes, announced by its header",
			limits:  Limits{},
			blob:    func(t *testing.T) io.Reader { return hugeFileTar(t, 20<<30) },
			wantMsg: "MaxFileBytes 2147483648",
		},
		{
			name:    "one huge file over MaxLayerBytes",
			limits:  Limits{MaxLayerBytes: 32 << 20, MaxFileBytes: 1 << 40, Window: 1 << 20},
			blob:    func(t *testing.T) io.Reader { return hugeFileTar(t, 20<<30) },
			wantMsg: "MaxLayerBytes 33554432",
		},
		{
			name:    "too many files",
			limits:  Limits{MaxFiles: 10},
			blob:    func(t *testing.T) io.Reader { return bytes.NewReader(tarLayer(t, manyFiles...)) },
			wantMsg: "MaxFiles 10",
		},
		{
			name:    "raw blob over MaxFileBytes",
			limits:  Limits{MaxFileBytes: 1 << 20, Window: minWindow},
			blob:    func(t *testing.T) io.Reader { return bytes.NewReader(samples.Filler(3 << 20)) },
			wantMsg: "MaxFileBytes 1048576",
			scan:    func(s *Scanner) func(context.Context, io.Reader, Prioritizer) (Result, error) { return s.ScanArtifact },
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: c.limits})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			scan := s.ScanLayer
			if c.scan != nil {
				scan = c.scan(s)
			}
			_, err := scan(context.Background(), c.blob(t), Interactive)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("err = %q, want it to name the limit: %q", err, c.wantMsg)
			}
			// Streaming: the decompressed bytes pass through, they are not
			// collected. Allocation stays far below what was decompressed.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 48<<20 {
				t.Errorf("allocated %d MiB to reach the limit", alloc>>20)
			}
			t.Logf("%v in %v", err, elapsed)
		})
	}
}

// An indicator that straddles a window boundary is seen whole by the next
// window, which starts windowOverlap bytes earlier.
func TestWindowBoundary(t *testing.T) {
	const window = minWindow
	indicator := "donate.v2.xmrig.com"
	for _, at := range []int{window - 7, 2*(window-windowOverlap) + window - 3} {
		data := append(samples.ELF(), samples.Filler(4*window)...)
		copy(data[at:], indicator)
		s := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: window}})
		layer := tarLayer(t, tfile{name: "usr/bin/big", mode: 0o644, data: data})
		res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
		if err != nil {
			t.Fatal(err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/usr/bin/big") {
			t.Errorf("indicator at %d across a window boundary not found: %+v", at, res.Findings)
		}
		if res.Bytes != int64(len(data)) {
			t.Errorf("Bytes = %d, want %d (overlap must not be counted twice)", res.Bytes, len(data))
		}
	}
	// Past MaxFileBytes the file is refused, not silently cut.
	s := newTestScanner(t, Options{Workers: 1, Limits: Limits{Window: window, MaxFileBytes: 2 * window}})
	layer := tarLayer(t, tfile{name: "big", mode: 0o644, data: samples.Filler(3 * window)})
	if _, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive); !errors.Is(err, ErrLimit) {
		t.Errorf("err = %v, want ErrLimit", err)
	}
}

func TestLimitsValidation(t *testing.T) {
	for _, l := range []Limits{{Window: 1024}, {MaxFiles: -1}, {Window: 2 << 30}} {
		if _, err := New(Options{Workers: 1, Limits: l}); err == nil {
			t.Errorf("New accepted limits %+v", l)
		}
	}
	s := newTestScanner(t, Options{Workers: 1})
	if s.Limits() != DefaultLimits() {
		t.Errorf("zero limits gave %+v, want defaults %+v", s.Limits(), DefaultLimits())
	}
}

// endlessLayer writes a tar of small files into a pipe until the reader
// goes away, calling after(n) once n files have been written.
func endlessLayer(t *testing.T, after func(n int)) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		data := []byte(strings.Repeat("endless ", 512))
		for n := 0; ; n++ {
			if after != nil {
				after(n)
			}
			err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
			if err == nil {
				_, err = tw.Write(data)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	t.Cleanup(func() { pr.Close() })
	return pr
}

func TestCancellation(t *testing.T) {
	t.Run("context canceled mid-layer", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := endlessLayer(t, func(n int) {
			if n == 200 {
				cancel()
			}
		})
		res, err := s.ScanLayer(ctx, r, Interactive)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if res.Files < 100 {
			t.Errorf("only %d files scanned before the cancel", res.Files)
		}
	})
	t.Run("LayerTimeout", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2, Limits: Limits{LayerTimeout: 200 * time.Millisecond}})
		start := time.Now()
		_, err := s.ScanLayer(context.Background(), endlessLayer(t, nil), Interactive)
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "LayerTimeout 200ms") {
			t.Fatalf("err = %v, want ErrLimit naming LayerTimeout", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("stopping took %v", d)
		}
	})
	t.Run("already canceled", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.ScanLayer(ctx, bytes.NewReader(tarLayer(t, reg("a", 0o644, "a"))), Interactive)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}
