package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
)

// A stand-in mirror that refuses an image the way each gate mode does,
// without scanning anything, so that what a real client does with the
// refusal can be watched on its own: how it reports it, how long it keeps
// trying, with which Range headers, and whether it then goes elsewhere.

// refusal is how the stand-in refuses the image.
type refusal int

const (
	// refuseManifest answers the manifest with 403 DENIED (hold mode).
	refuseManifest refusal = iota
	// cutLayer serves the manifest and config, streams the refused layer up
	// to its last streamHold bytes, cuts the connection, and answers every
	// later request for that layer with 403 DENIED (stream mode).
	cutLayer
	// stillScanning answers the first two manifest GETs with 429
	// TOOMANYREQUESTS and Retry-After: 1, as hold mode does when its hold
	// runs out, then serves the image whole: it refuses nothing.
	stillScanning
	// scanOutlastsHold answers every manifest GET with 429, as hold mode
	// does while a scan outlasts every hold: how long each client keeps
	// asking.
	scanOutlastsHold
)

func (r refusal) String() string {
	switch r {
	case refuseManifest:
		return "hold (403 on the manifest)"
	case cutLayer:
		return "stream (layer cut before its tail, then 403)"
	case stillScanning:
		return "hold, still scanning (429 twice, then the image)"
	}
	return "hold, scan outlasts every hold (429 always)"
}

// streamHold is the tail a streaming gate keeps until the verdict.
const streamHold = 64 << 10

// bigLayerImage is a clean image with a second layer of about size
// incompressible bytes, large enough to be cut before its last 64 KiB.
func bigLayerImage(note string, size int) testregistry.Image {
	img := harmlessImage(note)
	img.Layers = append(img.Layers, testregistry.Layer(testregistry.File{
		Path: "usr/local/lib/pullgate-e2e.bin", Mode: 0o644, Data: samples.Filler(size),
	}))
	return img
}

// standInRequest is one request the stand-in answered.
type standInRequest struct {
	At     time.Duration // since the stand-in started
	Method string
	URI    string
	Range  string
	Agent  string
	Status int
	Sent   int64 // body bytes written
}

// standIn serves one image under any repository name and tag, and refuses
// it as its refusal says.
type standIn struct {
	srv     *httptest.Server
	img     *testregistry.Built
	blobs   map[digest.Digest][]byte
	refused digest.Digest // the layer refused (cutLayer)
	how     refusal
	reason  string
	start   time.Time

	mu   sync.Mutex
	reqs []standInRequest
	cuts int
	busy int // manifest GETs answered 429 (stillScanning)
}

var (
	standInManifest = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	standInBlob     = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$`)
)

// startStandIn serves img, refusing it as how says with the reason that
// pullgate would give. The refused layer is img's last.
func startStandIn(t testing.TB, img testregistry.Image, how refusal) *standIn {
	t.Helper()
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{img: built, how: how, blobs: map[digest.Digest][]byte{built.ConfigDigest: built.Config}, start: time.Now()}
	for i, l := range img.Layers {
		s.blobs[built.Layers[i].Digest] = l
	}
	s.refused = built.Layers[len(built.Layers)-1].Digest
	s.reason = fmt.Sprintf("pullgate: docker.io/someone/miner@%s blocked: layer %s, file /usr/bin/kworker matched MinerXMRig (XMRig cryptominer)", built.Digest, s.refused)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.srv.Listener = ln
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

// refuses reports whether the stand-in refuses the image at all.
func (s *standIn) refuses() bool { return s.how == refuseManifest || s.how == cutLayer }

// URL is "http://127.0.0.1:N"; Addr is "127.0.0.1:N".
func (s *standIn) URL() string  { return s.srv.URL }
func (s *standIn) Addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// Requests returns what the stand-in answered so far.
func (s *standIn) Requests() []standInRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]standInRequest(nil), s.reqs...)
}

// countingWriter counts the body bytes a handler writes.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *standIn) serve(w http.ResponseWriter, req *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	rec := standInRequest{At: time.Since(s.start), Method: req.Method, URI: req.URL.RequestURI(), Range: req.Header.Get("Range"), Agent: req.UserAgent()}
	// The record is written even when the handler cuts the connection.
	defer func() {
		rec.Status, rec.Sent = cw.status, cw.n
		s.mu.Lock()
		s.reqs = append(s.reqs, rec)
		s.mu.Unlock()
	}()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	switch {
	case req.URL.Path == "/v2/" || req.URL.Path == "/v2":
		cw.WriteHeader(http.StatusOK)
	case standInManifest.MatchString(req.URL.Path):
		s.serveManifest(cw, req)
	case standInBlob.MatchString(req.URL.Path):
		s.serveBlob(cw, req, digest.Digest(standInBlob.FindStringSubmatch(req.URL.Path)[2]))
	default:
		s.deny(cw, req, http.StatusNotFound, "NAME_UNKNOWN", "no such repository")
	}
}

func (s *standIn) serveManifest(w http.ResponseWriter, req *http.Request) {
	if s.how == refuseManifest {
		s.deny(w, req, http.StatusForbidden, "DENIED", s.reason)
		return
	}
	if (s.how == stillScanning || s.how == scanOutlastsHold) && req.Method == http.MethodGet {
		s.mu.Lock()
		busy := s.busy < 2 || s.how == scanOutlastsHold
		s.busy++
		s.mu.Unlock()
		if busy {
			w.Header().Set("Retry-After", "1")
			s.deny(w, req, http.StatusTooManyRequests, "TOOMANYREQUESTS", "pullgate: docker.io/someone/miner:1 is still being scanned; retry in 1s")
			return
		}
	}
	w.Header().Set("Content-Type", s.img.MediaType)
	w.Header().Set("Docker-Content-Digest", s.img.Digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(s.img.Manifest)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(s.img.Manifest)
	}
}

func (s *standIn) serveBlob(w http.ResponseWriter, req *http.Request, dgst digest.Digest) {
	data, ok := s.blobs[dgst]
	if !ok {
		s.deny(w, req, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	if dgst != s.refused || s.how != cutLayer {
		w.Header().Set("Docker-Content-Digest", dgst.String())
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
		return
	}
	s.mu.Lock()
	first := s.cuts == 0 && req.Method == http.MethodGet
	if first {
		s.cuts++
	}
	s.mu.Unlock()
	if !first {
		s.deny(w, req, http.StatusForbidden, "DENIED", s.reason)
		return
	}
	// The first GET streams all but the tail, then the verdict "blocked"
	// cuts it, as a streaming gate does.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", dgst.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data[:len(data)-streamHold])
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// deny writes a registry error (a bare status on HEAD).
func (s *standIn) deny(w http.ResponseWriter, req *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if req.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// agents are the distinct User-Agents the stand-in saw.
func (s *standIn) agents() []string {
	var out []string
	for _, r := range s.Requests() {
		if !slices.Contains(out, r.Agent) {
			out = append(out, r.Agent)
		}
	}
	return out
}

// manifestRequests are the manifest requests, as "+0.0s HEAD 200".
func (s *standIn) manifestRequests() []string {
	var out []string
	for _, r := range s.Requests() {
		if strings.Contains(r.URI, "/manifests/") {
			out = append(out, fmt.Sprintf("+%.1fs %s %d", r.At.Seconds(), r.Method, r.Status))
		}
	}
	return out
}

// refusedLayerRequests are the requests for the refused layer, as
// "+1.2s GET Range=bytes=N- -> 403 (0 B)".
func (s *standIn) refusedLayerRequests() []string {
	var out []string
	for _, r := range s.Requests() {
		if !strings.Contains(r.URI, string(s.refused)) {
			continue
		}
		rng := r.Range
		if rng == "" {
			rng = "none"
		}
		status := strconv.Itoa(r.Status)
		if r.Status == http.StatusOK && r.Sent < int64(len(s.blobs[s.refused])) {
			status = "200 cut"
		}
		out = append(out, fmt.Sprintf("+%.1fs %s Range=%s -> %s (%d B)", r.At.Seconds(), r.Method, rng, status, r.Sent))
	}
	return out
}
