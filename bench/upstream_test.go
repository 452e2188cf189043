package bench

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// fileRegistry is the upstream of the side-by-side comparison: a plain,
// anonymous registry that serves fileImages, blobs from their files. Both
// mirrors are pointed at the same one. It is not internal/testregistry
// (token auth, CDN redirects, blobs in memory) because the 4 GiB layer of
// the memory condition does not fit in memory, and distribution's proxy
// and pullgate then differ only in what they do, not in how they log in.
type fileRegistry struct {
	srv *httptest.Server

	mu        sync.Mutex
	manifests map[string][]byte        // by "repo:tag" and "repo@digest"
	files     map[digest.Digest]string // layer files
	mem       map[digest.Digest][]byte // configs

	// throttle is each blob response's rate in bytes per second (0: as
	// fast as loopback goes), as testregistry's BytesPerSecond fault.
	throttle atomic.Int64
}

func startFileRegistry(b testing.TB) *fileRegistry {
	b.Helper()
	r := &fileRegistry{manifests: map[string][]byte{}, files: map[digest.Digest]string{}, mem: map[digest.Digest][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	b.Cleanup(r.srv.Close)
	return r
}

func (r *fileRegistry) add(im *fileImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[repo+":"+im.tag] = im.manifest
	r.manifests[repo+"@"+im.manifestDigest().String()] = im.manifest
	r.mem[digest.FromBytes(im.config)] = im.config
	for _, l := range im.layers {
		r.files[l.Digest] = l.Path
	}
}

func (r *fileRegistry) serve(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
		w.Write([]byte("{}"))
	case strings.Contains(p, "/manifests/"):
		name, ref, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/manifests/")
		key := name + ":" + ref
		if strings.HasPrefix(ref, "sha256:") {
			key = name + "@" + ref
		}
		r.mu.Lock()
		m, ok := r.manifests[key]
		r.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", mediaManifest)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m).String())
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(m))
	case strings.Contains(p, "/blobs/"):
		_, ref, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/blobs/")
		r.serveBlob(w, req, digest.Digest(ref))
	default:
		http.NotFound(w, req)
	}
}

func (r *fileRegistry) serveBlob(w http.ResponseWriter, req *http.Request, d digest.Digest) {
	r.mu.Lock()
	path, onDisk := r.files[d]
	data, inMem := r.mem[d]
	r.mu.Unlock()
	var content io.ReadSeeker
	switch {
	case onDisk:
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		content = f
	case inMem:
		content = bytes.NewReader(data)
	default:
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	if rate := r.throttle.Load(); rate > 0 {
		w = &throttledWriter{ResponseWriter: w, rate: rate, start: time.Now()}
	}
	http.ServeContent(w, req, "", time.Time{}, content)
}

// throttledWriter paces a response body to rate bytes per second in 10 ms
// steps, flushed as they go, as a network link delivers bytes (the same
// shape as testregistry's throttle, so the figures stay comparable).
type throttledWriter struct {
	http.ResponseWriter
	rate  int64
	start time.Time
	sent  int64
}

func (t *throttledWriter) Write(p []byte) (int, error) {
	const step = 10 * time.Millisecond
	chunk := max(int(t.rate/int64(time.Second/step)), 1)
	rc := http.NewResponseController(t.ResponseWriter)
	written := 0
	for len(p) > 0 {
		n := min(chunk, len(p))
		due := t.start.Add(time.Duration(float64(t.sent) / float64(t.rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait) // pacing, not waiting for a condition
		}
		m, err := t.ResponseWriter.Write(p[:n])
		written += m
		t.sent += int64(m)
		if err != nil {
			return written, err
		}
		_ = rc.Flush()
		p = p[n:]
	}
	return written, nil
}
