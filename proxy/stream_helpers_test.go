package proxy

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// pausingRegistry is an upstream whose blob downloads can be paused before
// their last pauseTail bytes until the test says go (or cut there), so
// that what a client of pullgate has received before the scan can finish
// is known exactly.
type pausingRegistry struct {
	manifests map[string]*testregistry.Built // by repo:tag and by digest
	blobs     map[digest.Digest][]byte

	mu     sync.Mutex
	pauses map[digest.Digest]*pause
	gets   map[digest.Digest]int
	// lies are blobs sent as a hostile upstream would: with the length
	// given here (-1: none, chunked) instead of their own, and cut after
	// their real bytes.
	lies map[digest.Digest]int64
}

type pause struct {
	reached chan struct{} // closed when a download has sent all but the tail
	release chan struct{} // closed by the test: go on
	cut     bool          // after the release, cut instead of sending the tail
	once    sync.Once
	reach   sync.Once
}

const pauseTail = 4 << 10

func newPausingRegistry(t *testing.T) (*pausingRegistry, string) {
	t.Helper()
	p := &pausingRegistry{manifests: map[string]*testregistry.Built{}, blobs: map[digest.Digest][]byte{},
		pauses: map[digest.Digest]*pause{}, gets: map[digest.Digest]int{}, lies: map[digest.Digest]int64{}}
	ts := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pz := range p.pauses {
			pz.open()
		}
	})
	return p, ts.URL
}

// push adds img under repo:tag and returns it built.
func (p *pausingRegistry) push(t *testing.T, repo, tag string, img testregistry.Image) *testregistry.Built {
	t.Helper()
	b, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.manifests[repo+":"+tag], p.manifests[b.Digest.String()] = b, b
	p.blobs[b.ConfigDigest] = b.Config
	for i, l := range b.Layers {
		p.blobs[l.Digest] = img.Layers[i]
	}
	return b
}

// pauseBlob makes the next downloads of d stop before their last
// pauseTail bytes until release (then cut them when cut is set).
func (p *pausingRegistry) pauseBlob(d digest.Digest, cut bool) *pause {
	pz := &pause{reached: make(chan struct{}), release: make(chan struct{}), cut: cut}
	p.mu.Lock()
	p.pauses[d] = pz
	p.mu.Unlock()
	return pz
}

func (pz *pause) open() { pz.once.Do(func() { close(pz.release) }) }

func (p *pausingRegistry) blobGets(d digest.Digest) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[d]
}

func (p *pausingRegistry) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	if repo, ref, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok {
		p.mu.Lock()
		b := p.manifests[repo+":"+ref]
		if b == nil {
			b = p.manifests[ref]
		}
		p.mu.Unlock()
		if b == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", b.MediaType)
		w.Header().Set("Docker-Content-Digest", b.Digest.String())
		w.Header().Set("Content-Length", fmt.Sprint(len(b.Manifest)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(b.Manifest)
		}
		return
	}
	_, ref, _ := strings.Cut(r.URL.Path, "/blobs/")
	d := digest.Digest(ref)
	p.mu.Lock()
	data, ok := p.blobs[d]
	pz := p.pauses[d]
	lie, lying := p.lies[d]
	if r.Method == http.MethodGet {
		p.gets[d]++
	}
	p.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if lying {
		if lie >= 0 {
			w.Header().Set("Content-Length", fmt.Sprint(lie))
		}
		_, _ = w.Write(data)
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	if r.Method == http.MethodHead {
		return
	}
	if pz == nil {
		_, _ = w.Write(data)
		return
	}
	_, _ = w.Write(data[:len(data)-pauseTail])
	_ = http.NewResponseController(w).Flush()
	pz.reach.Do(func() { close(pz.reached) })
	select {
	case <-pz.release:
	case <-r.Context().Done():
		return
	}
	if pz.cut {
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(data[len(data)-pauseTail:])
}

// streamFixture is pullgate in stream mode in front of a pausing upstream.
type streamFixture struct {
	*fixture
	up    *pausingRegistry
	spool string
}

func newStreamFixture(t *testing.T, mods ...func(*Options)) *streamFixture {
	t.Helper()
	up, url := newPausingRegistry(t)
	blobs, store := testStores(t)
	spool := filepath.Join(t.TempDir(), "spool")
	opts := Options{Options: gate.Options{
		Upstreams: map[string]*upstream.Registry{"docker.io": loopbackUpstream(t, url)},
		Blobs:     blobs, Verdicts: store, Locks: store, Releases: store,
		Scanner:  testScanner(t),
		SpoolDir: spool,
		Logger:   slog.New(slog.DiscardHandler),
	}, Mode: ModeStream}
	for _, m := range mods {
		m(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &streamFixture{fixture: &fixture{srv: srv, url: ts.URL, blobs: blobs, store: store, client: ts.Client()}, up: up, spool: opts.SpoolDir}
}

// noisyLayer is a gzip layer of about n incompressible bytes, plus files.
func noisyLayer(n int, files ...testregistry.File) []byte {
	filler := make([]byte, n)
	_, _ = rand.Read(filler)
	return testregistry.Layer(append(files, testregistry.File{Path: "opt/data.bin", Data: filler})...)
}

// blobDownload is a blob GET in progress, its body read in the background.
type blobDownload struct {
	resp *http.Response
	got  atomic.Int64
	body []byte
	err  error
	done chan struct{}
}

// startGet sends a GET and reads its body in the background.
func (f *streamFixture) startGet(t *testing.T, path string, hdr ...string) *blobDownload {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.url+path, nil)
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
	dl := &blobDownload{resp: resp, done: make(chan struct{})}
	go func() {
		defer close(dl.done)
		defer resp.Body.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			dl.body = append(dl.body, buf[:n]...)
			dl.got.Add(int64(n))
			if err != nil {
				if err != io.EOF {
					dl.err = err
				}
				return
			}
		}
	}()
	return dl
}

// wait returns the whole body read, and the error that ended it (nil at
// a clean end).
func (dl *blobDownload) wait(t *testing.T) ([]byte, error) {
	t.Helper()
	select {
	case <-dl.done:
	case <-time.After(time.Minute):
		t.Fatal("download did not end")
	}
	return dl.body, dl.err
}

// spoolFiles lists what is in the spool folder.
func (f *streamFixture) spoolFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(f.spool)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// smallWindowClient is an HTTP client whose connections receive into a
// fixed 128 KiB socket buffer: what the server has sent and the client has
// not read is bounded by that and the server's send buffer, not by the
// receive buffer's autotuning.
func smallWindowClient(t *testing.T) *http.Client {
	t.Helper()
	// Set before connect, so that the window offered is the small one.
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 128<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
