package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// fsFixture is a fixture whose blob store is the filesystem driver under a
// temporary directory, so tests can do to the files what a failing disk or
// an intruder would.
func fsFixture(t *testing.T, mods ...func(*Options, *scanner.Options)) (*fixture, string) {
	t.Helper()
	root := t.TempDir()
	blobs, err := storage.NewFilesystemBlobs(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	mods = append([]func(*Options, *scanner.Options){func(o *Options, _ *scanner.Options) { o.Blobs = blobs }}, mods...)
	f := newFixture(t, mods...)
	f.blobs = blobs
	return f, root
}

// dataFile is where the filesystem driver keeps a blob's bytes.
func dataFile(root string, d digest.Digest) string {
	return filepath.Join(root, "docker/registry/v2/blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}

// bigLayer is an uncompressed layer of n pseudo-random bytes in one file.
func bigLayer(seed uint64, n int) []byte {
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	p := make([]byte, n)
	_, _ = r.Read(p)
	return testregistry.LayerTar(testregistry.File{Path: fmt.Sprintf("data/%d.bin", seed), Mode: 0o644, Data: p})
}

// warmBlob pushes a bare blob upstream and pulls it once through pullgate,
// so that it is scanned, stored and served from the store from then on.
func warmBlob(t *testing.T, f *fixture, repo string, blob []byte) digest.Digest {
	t.Helper()
	d := f.hub.PushBlob(t, repo, blob)
	resp, body := f.do(t, "GET", "/v2/"+repo+"/blobs/"+d.String())
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, blob) {
		t.Fatalf("warm-up pull: %d, %d bytes", resp.StatusCode, len(body))
	}
	return d
}

// download GETs a blob and returns what arrived: the status, the declared
// length, the body as far as it came, and the read error if it was cut.
func download(t *testing.T, f *fixture, path string, hdr ...string) (int, int64, []byte, error) {
	t.Helper()
	req, err := http.NewRequest("GET", f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.ContentLength, body, err
}

func TestServedBlobIsVerified(t *testing.T) {
	const size = 1 << 20
	minerLayer := testregistry.LayerTar(
		testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()},
		testregistry.File{Path: "usr/share/pad", Mode: 0o644, Data: samples.Filler(512 << 10)})
	flip := func(t *testing.T, file string) {
		p, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		p[len(p)/2] ^= 0xff
		if err := os.WriteFile(file, p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, file string)
		hdr    []string
		// cut: the response starts and is cut short; else nothing of the
		// blob is sent (the whole request fits in the held tail).
		cut bool
	}{
		{name: "bytes flipped", tamper: flip, cut: true},
		{name: "miner copied over", tamper: func(t *testing.T, file string) {
			if err := os.WriteFile(file, minerLayer, 0o644); err != nil {
				t.Fatal(err)
			}
		}, cut: true},
		{name: "large range of flipped bytes", tamper: flip, hdr: []string{"Range", "bytes=1000-400000"}, cut: true},
		{name: "small range of flipped bytes", tamper: flip, hdr: []string{"Range", "bytes=0-99"}},
		{name: "range past the flipped bytes", tamper: flip, hdr: []string{"Range", "bytes=-100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, root := fsFixture(t)
			blob := bigLayer(1, size)
			d := warmBlob(t, f, "library/big", blob)
			tc.tamper(t, dataFile(root, d))
			stored, err := os.ReadFile(dataFile(root, d))
			if err != nil {
				t.Fatal(err)
			}

			status, length, got, err := download(t, f, "/v2/library/big/blobs/"+d.String(), tc.hdr...)
			if tc.cut {
				if status != http.StatusOK && status != http.StatusPartialContent {
					t.Fatalf("status %d, want the download to start", status)
				}
				if err == nil || int64(len(got)) >= length {
					t.Fatalf("download completed: %d of %d bytes, err %v", len(got), length, err)
				}
				if len(got) == 0 {
					t.Fatal("nothing was sent: the test no longer exercises a cut")
				}
			} else if status != http.StatusServiceUnavailable {
				t.Fatalf("status %d (%d bytes), want 503 before any byte", status, len(got))
			}
			if bytes.Equal(got, stored) || digest.FromBytes(got) == d {
				t.Fatal("the client got the complete stored bytes")
			}
			if _, err := f.blobs.Stat(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the corrupt blob is still in the store: %v", err)
			}

			before := f.hub.CDNGets(d)
			status, _, got, err = download(t, f, "/v2/library/big/blobs/"+d.String())
			if status != http.StatusOK || err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("next pull: %d, %d bytes, %v", status, len(got), err)
			}
			if n := f.hub.CDNGets(d); n != before+1 {
				t.Fatalf("the next pull fetched the blob %d times from upstream, want once", n-before)
			}
		})
	}
}

func TestServedRanges(t *testing.T) {
	f, _ := fsFixture(t)
	blob := bigLayer(2, 300_000)
	d := warmBlob(t, f, "library/ranged", blob)
	n := int64(len(blob))
	for _, tc := range []struct {
		rng        string
		status     int
		start, end int64 // served bytes [start, end)
	}{
		{"bytes=0-99", http.StatusPartialContent, 0, 100},
		{"bytes=100000-", http.StatusPartialContent, 100000, n},
		{"bytes=-5000", http.StatusPartialContent, n - 5000, n},
		{"bytes=1000-99999999", http.StatusPartialContent, 1000, n},
		{"bytes=0-1,5-6", http.StatusOK, 0, n}, // several ranges: the whole blob
		{"items=0-1", http.StatusOK, 0, n},
		{fmt.Sprintf("bytes=%d-", n), http.StatusRequestedRangeNotSatisfiable, 0, 0},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			status, _, got, err := download(t, f, "/v2/library/ranged/blobs/"+d.String(), "Range", tc.rng)
			if err != nil || status != tc.status {
				t.Fatalf("status %d, %v", status, err)
			}
			if tc.status != http.StatusRequestedRangeNotSatisfiable && !bytes.Equal(got, blob[tc.start:tc.end]) {
				t.Fatalf("got %d bytes, want [%d, %d)", len(got), tc.start, tc.end)
			}
		})
	}
	resp, body := f.do(t, "HEAD", "/v2/library/ranged/blobs/"+d.String())
	if resp.StatusCode != http.StatusOK || resp.ContentLength != n || len(body) != 0 || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

// slowReader opens a blob download that reads 1 KB and then stops.
func slowReader(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	conn, err := dialSlowReader(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func dialSlowReader(addr, path string) (net.Conn, error) {
	// A small receive buffer: the server's writes block after a few KiB,
	// not after the several hundred KiB loopback buffers take by default.
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := io.ReadFull(conn, make([]byte, 1024)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func TestBlobStreamCap(t *testing.T) {
	f, _ := fsFixture(t, func(o *Options, _ *scanner.Options) {
		o.Serve.MaxStreams = 2
		o.Serve.StreamWait = 50 * time.Millisecond
		o.Serve.StreamRetryAfter = 3 * time.Second
	})
	d := warmBlob(t, f, "library/capped", bigLayer(3, 8<<20))
	path := "/v2/library/capped/blobs/" + d.String()
	addr := strings.TrimPrefix(f.url, "http://")
	held := []net.Conn{slowReader(t, addr, path), slowReader(t, addr, path)}
	testsync.WaitFor(t, 5*time.Second, "two streams held", func() bool { return len(f.srv.streams) == 2 })

	resp, body := f.do(t, "GET", path)
	if code, _ := ociError(t, body); resp.StatusCode != http.StatusTooManyRequests || code != "TOOMANYREQUESTS" || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("over the cap: %d %s, Retry-After %q", resp.StatusCode, code, resp.Header.Get("Retry-After"))
	}
	if resp, _ := f.do(t, "HEAD", path); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD needs no stream, got %d", resp.StatusCode)
	}
	for _, c := range held {
		c.Close()
	}
	testsync.WaitFor(t, 10*time.Second, "the streams to end with their clients", func() bool { return len(f.srv.streams) == 0 })
	if status, _, _, err := download(t, f, path); status != http.StatusOK || err != nil {
		t.Fatalf("after the slow readers left: %d, %v", status, err)
	}
}

func TestBlobWriteTimeout(t *testing.T) {
	f, _ := fsFixture(t, func(o *Options, _ *scanner.Options) { o.Serve.WriteTimeout = 300 * time.Millisecond })
	d := warmBlob(t, f, "library/stalled", bigLayer(4, 8<<20))
	path := "/v2/library/stalled/blobs/" + d.String()
	conn := slowReader(t, strings.TrimPrefix(f.url, "http://"), path)
	testsync.WaitFor(t, 5*time.Second, "the stream to start", func() bool { return len(f.srv.streams) == 1 })
	testsync.WaitFor(t, 10*time.Second, "the write timeout to end the stream", func() bool { return len(f.srv.streams) == 0 })
	// The server closed the connection: the client finds its end after
	// what its buffers hold.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the connection was not closed: %v", err)
	}
}

// faultyFixture is a fixture whose blob store runs on d, a driver the
// test makes fail.
func faultyFixture(t *testing.T) (*fixture, *faultyDriver) {
	t.Helper()
	d := &faultyDriver{StorageDriver: inmemory.New()}
	f := newFixture(t, func(o *Options, _ *scanner.Options) {
		blobs, err := storage.NewBlobs(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		o.Blobs = blobs
	})
	return f, d
}

func TestReadyzProbesAWrite(t *testing.T) {
	f, d := faultyFixture(t)
	f.srv.storeProbe.every = 0 // probe on every call, for the test
	if resp, body := f.do(t, "GET", "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz with a working store: %d %s", resp.StatusCode, body)
	}
	d.failWrites.Store(true)
	resp, body := f.do(t, "GET", "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "blob store cannot write") || !strings.Contains(string(body), syscall.ENOSPC.Error()) {
		t.Fatalf("readyz with a store that cannot write: %d %q", resp.StatusCode, body)
	}
	d.failWrites.Store(false)
	if resp, body := f.do(t, "GET", "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz after the store recovered: %d %s", resp.StatusCode, body)
	}
}

func TestReadyzProbeIsCached(t *testing.T) {
	f, d := faultyFixture(t)
	if resp, _ := f.do(t, "GET", "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}
	d.puts.Store(0)
	for range 5 {
		f.do(t, "GET", "/readyz")
	}
	if n := d.puts.Load(); n != 0 {
		t.Fatalf("%d probe writes for 5 readiness checks within the cache time after the first, want none", n)
	}
}

func TestStoreErrorsHideServerPaths(t *testing.T) {
	f, d := faultyFixture(t)
	dgst := warmBlob(t, f, "library/hidden", bigLayer(5, 1000))
	d.failReads.Store(true)
	resp, body := f.do(t, "GET", "/v2/library/hidden/blobs/"+dgst.String())
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	code, msg := ociError(t, body)
	if code != "UNAVAILABLE" || !strings.Contains(msg, "blob store unavailable") || strings.Contains(msg, fakeStorePath) {
		t.Fatalf("message %s %q", code, msg)
	}
}

// faultyDriver fails what a broken disk fails, with errors that name
// files on the server as the filesystem driver's do, and counts writes.
type faultyDriver struct {
	storagedriver.StorageDriver
	failWrites, failReads atomic.Bool
	puts                  atomic.Int64
}

const fakeStorePath = "/var/lib/pullgate/data/blobs"

func (d *faultyDriver) PutContent(ctx context.Context, path string, content []byte) error {
	d.puts.Add(1)
	if d.failWrites.Load() {
		return &os.PathError{Op: "open", Path: fakeStorePath + path, Err: syscall.ENOSPC}
	}
	return d.StorageDriver.PutContent(ctx, path, content)
}

func (d *faultyDriver) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	if d.failWrites.Load() {
		return nil, &os.PathError{Op: "open", Path: fakeStorePath + path, Err: syscall.ENOSPC}
	}
	return d.StorageDriver.Writer(ctx, path, append)
}

func (d *faultyDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	if d.failReads.Load() {
		return nil, &os.PathError{Op: "open", Path: fakeStorePath + path, Err: syscall.EIO}
	}
	return d.StorageDriver.Reader(ctx, path, offset)
}

// Hundreds of clients that read 1 KB of a warm blob and stop must cost a
// bounded amount of memory each, and the write timeout must free them.
func TestSlowReadersLoad(t *testing.T) {
	const (
		readers = 500
		// Generous: a stream holds one 64 KiB buffer, and a connection
		// net/http's few KiB of buffers and a goroutine.
		maxPerStream = 256 << 10
	)
	f, _ := fsFixture(t, func(o *Options, _ *scanner.Options) {
		o.Serve.MaxStreams = readers
		o.Serve.WriteTimeout = 6 * time.Second
	})
	blob := bigLayer(6, 8<<20)
	d := warmBlob(t, f, "library/warm", blob)
	path := "/v2/library/warm/blobs/" + d.String()
	addr := strings.TrimPrefix(f.url, "http://")

	t.Logf("before: %s", procMemory(t))
	before := liveMemory()
	var (
		mu    sync.Mutex
		conns []net.Conn
		errs  []error
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	dials := make(chan struct{}, 100) // many at a time, as clients arrive
	start := time.Now()
	for range readers {
		dials <- struct{}{}
		wg.Go(func() {
			defer func() { <-dials }()
			c, err := dialSlowReader(addr, path)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d slow readers failed, first: %v", len(errs), errs[0])
	}
	held := len(f.srv.streams)
	t.Logf("%d slow readers in %s", readers, time.Since(start).Round(time.Millisecond))
	peak := liveMemory()
	per := (peak - before) / uint64(max(held, 1))
	t.Logf("%d streams held: %d KiB live heap and stacks in all, %d KiB per stream; %s",
		held, (peak-before)>>10, per>>10, procMemory(t))
	// On a loaded machine the first readers may meet the write timeout
	// before the last one arrives; the measure needs many held at once.
	if held < readers/5 {
		t.Fatalf("only %d of %d streams were held at once: the measure would not mean much", held, readers)
	}
	if per > maxPerStream {
		t.Fatalf("%d KiB per stream, over the %d KiB bound", per>>10, maxPerStream>>10)
	}

	testsync.WaitFor(t, 30*time.Second, "the write timeout to free the streams", func() bool { return len(f.srv.streams) == 0 })
	t.Logf("after the write timeout: %s", procMemory(t))
	if status, _, got, err := download(t, f, path); status != http.StatusOK || err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("a new client after the slow ones: %d, %d bytes, %v", status, len(got), err)
	}
}

// liveMemory is what the Go heap and goroutine stacks hold. Two GCs: the
// first moves what sync.Pools keep aside, the second frees it, so buffers
// pooled before the measure (by the warm-up's ingest) do not skew it.
func liveMemory() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// procMemory reports the process's peak and current resident memory.
func procMemory(t *testing.T) string {
	p, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "no /proc/self/status"
	}
	var out []string
	for _, l := range strings.Split(string(p), "\n") {
		if strings.HasPrefix(l, "VmHWM:") || strings.HasPrefix(l, "VmRSS:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

// verifiedCopy sends exactly the range asked for when the blob matches,
// and never the range's last byte when it does not.
func TestVerifiedCopy(t *testing.T) {
	for _, size := range []int64{0, 1, serveHold - 1, serveHold, serveHold + 1, 3*serveChunk + 17} {
		p := make([]byte, size)
		_, _ = mrand.NewChaCha8([32]byte{byte(size)}).Read(p)
		good := digest.FromBytes(p)
		bad := digest.FromString("something else")
		ranges := [][2]int64{{0, size}}
		if size > 0 {
			ranges = append(ranges, [2]int64{0, 1}, [2]int64{size - 1, 1}, [2]int64{size / 3, size / 2})
		}
		for _, rg := range ranges {
			name := fmt.Sprintf("size %d range %d+%d", size, rg[0], rg[1])
			var out bytes.Buffer
			if err := verifiedCopy(t.Context(), &out, bytes.NewReader(p), good, size, rg[0], rg[1]); err != nil || !bytes.Equal(out.Bytes(), p[rg[0]:rg[0]+rg[1]]) {
				t.Fatalf("%s: %d bytes, %v", name, out.Len(), err)
			}
			out.Reset()
			err := verifiedCopy(t.Context(), &out, bytes.NewReader(p), bad, size, rg[0], rg[1])
			if !errors.Is(err, storage.ErrDigestMismatch) {
				t.Fatalf("%s, wrong digest: %v", name, err)
			}
			if int64(out.Len()) >= rg[1] && rg[1] > 0 {
				t.Fatalf("%s, wrong digest: all %d bytes of the range were sent", name, out.Len())
			}
			if want := max(0, rg[1]-serveHold); int64(out.Len()) != want {
				t.Fatalf("%s, wrong digest: %d bytes sent, want %d (all but the held tail)", name, out.Len(), want)
			}
		}
	}
	// A short file is an error, never a short success.
	var out bytes.Buffer
	if err := verifiedCopy(t.Context(), &out, bytes.NewReader(make([]byte, 10)), digest.FromBytes(make([]byte, 11)), 11, 0, 11); err == nil {
		t.Fatal("a blob shorter than its size was served")
	}
}

func TestCorruptStoredManifestIsFetchedAgain(t *testing.T) {
	f, root := fsFixture(t)
	mdgst := f.hub.Push(t, "library/app", "1", testregistry.CleanImage("manifest"))
	path := "/v2/library/app/manifests/" + mdgst.String()
	resp, want := f.do(t, "GET", path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first pull: %d", resp.StatusCode)
	}
	if err := os.WriteFile(dataFile(root, mdgst), bytes.ToUpper(want), 0o644); err != nil {
		t.Fatal(err)
	}
	before := f.hub.ManifestGets("library/app", mdgst.String())
	resp, got := f.do(t, "GET", path)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("pull after the stored manifest was damaged: %d %q", resp.StatusCode, got)
	}
	if n := f.hub.ManifestGets("library/app", mdgst.String()); n != before+1 {
		t.Fatalf("manifest fetched %d times from upstream, want once", n-before)
	}
}

// Whatever the Range header, the range served lies inside the blob and
// Content-Length can be exact.
func FuzzRequestedRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=5-", "bytes=9-3", "bytes=0-1,2-3", "bytes=--1", "bytes=-0", "bytes=99999999999999999999-"} {
		f.Add(s, int64(100))
	}
	d := digest.FromString("x")
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		r := &http.Request{Header: http.Header{"Range": {h}}}
		rg, ok := requestedRange(r, d, size)
		if !ok {
			return
		}
		if rg.start < 0 || rg.length < 0 || rg.start+rg.length > size || (rg.partial && rg.length == 0) {
			t.Fatalf("Range %q on %d bytes: %+v", h, size, rg)
		}
	})
}
