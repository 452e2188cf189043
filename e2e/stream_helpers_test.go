package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// What the streaming tests put around pullgate: an upstream that can hold
// one blob's last bytes back until the test lets them go (so the order
// "the client has most of the layer, the upstream has not finished" is
// certain, not a race), and a tap between the clients and pullgate that
// counts the body bytes each blob response carried.

// pausingUpstream forwards to a testregistry, serving blob GETs itself (it
// follows the registry's redirect to its CDN), and holds back the last
// tail bytes of the blob paused until Release.
type pausingUpstream struct {
	srv     *httptest.Server
	reg     *testregistry.Registry
	paused  digest.Digest
	tail    int64
	release chan struct{}
	once    sync.Once
}

func startPausingUpstream(t testing.TB, reg *testregistry.Registry, paused digest.Digest, tail int64) *pausingUpstream {
	t.Helper()
	target, err := url.Parse(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &pausingUpstream{reg: reg, paused: paused, tail: tail, release: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(target)
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := standInBlob.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
			p.serveBlob(w, r, digest.Digest(m[2]))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.srv.Listener = ln
	p.srv.Start()
	t.Cleanup(func() {
		p.Release()
		p.srv.Close()
	})
	return p
}

// URL is the upstream URL to give pullgate.
func (p *pausingUpstream) URL() string { return p.srv.URL }

// Release lets the paused blob's tail go.
func (p *pausingUpstream) Release() { p.once.Do(func() { close(p.release) }) }

func (p *pausingUpstream) serveBlob(w http.ResponseWriter, r *http.Request, dgst digest.Digest) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.reg.URL()+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	// Go's client drops Authorization on the redirect to the CDN's other
	// host, as real clients do.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if dgst != p.paused || resp.StatusCode != http.StatusOK || resp.ContentLength <= p.tail {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if _, err := io.CopyN(w, resp.Body, resp.ContentLength-p.tail); err != nil {
		return
	}
	_ = http.NewResponseController(w).Flush()
	select {
	case <-p.release:
	case <-r.Context().Done():
		return
	}
	_, _ = io.Copy(w, resp.Body)
}

// tap is a reverse proxy in front of pullgate that records every request
// and the body bytes each response carried, and can cap the rate of what
// it passes on (a client's own link).
type tap struct {
	srv  *httptest.Server
	rate int // bytes per second per response; 0: uncapped

	mu   sync.Mutex
	seen []tapped
}

// tapped is one request through the tap, updated as its body goes out.
type tapped struct {
	Method, URI, Range, Agent string
	Status                    int
	Sent                      int64
}

func startTap(t testing.TB, target string) *tap {
	t.Helper()
	return startCappedTap(t, target, 0)
}

// startCappedTap is startTap passing at most rate bytes per second to
// each client response.
func startCappedTap(t testing.TB, target string, rate int) *tap {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{rate: rate}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1 // pass bytes on as they come: the point is to see a stream
	tp.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		i := len(tp.seen)
		tp.seen = append(tp.seen, tapped{Method: r.Method, URI: r.URL.RequestURI(), Range: r.Header.Get("Range"), Agent: r.UserAgent()})
		tp.mu.Unlock()
		tw := &tapWriter{ResponseWriter: w, tap: tp, i: i}
		if rate > 0 {
			tw.tick = time.NewTicker(tapStep)
			defer tw.tick.Stop()
		}
		proxy.ServeHTTP(tw, r)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp.srv.Listener = ln
	tp.srv.Start()
	t.Cleanup(tp.srv.Close)
	return tp
}

// URL is "http://127.0.0.1:N"; Addr is "127.0.0.1:N".
func (tp *tap) URL() string  { return tp.srv.URL }
func (tp *tap) Addr() string { return strings.TrimPrefix(tp.srv.URL, "http://") }

// Requests returns what went through the tap so far.
func (tp *tap) Requests() []tapped {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]tapped(nil), tp.seen...)
}

// MostSent is the largest body any one response for the blob carried so
// far, and BlobSent the bytes of all of them.
func (tp *tap) MostSent(dgst digest.Digest) (most, all int64) {
	for _, r := range tp.Requests() {
		if r.Method == http.MethodGet && strings.Contains(r.URI, "/blobs/"+dgst.String()) {
			most, all = max(most, r.Sent), all+r.Sent
		}
	}
	return most, all
}

// Pending reports whether a GET whose URI contains part is still waiting
// for its response headers.
func (tp *tap) Pending(part string) bool {
	for _, r := range tp.Requests() {
		if r.Method == http.MethodGet && r.Status == 0 && strings.Contains(r.URI, part) {
			return true
		}
	}
	return false
}

// Summary lists the requests for dgst as "GET Range=… -> 200 (N B)".
func (tp *tap) Summary(dgst digest.Digest) []string {
	var out []string
	for _, r := range tp.Requests() {
		if strings.Contains(r.URI, dgst.String()) {
			out = append(out, fmt.Sprintf("%s Range=%q -> %d (%d B)", r.Method, r.Range, r.Status, r.Sent))
		}
	}
	return out
}

type tapWriter struct {
	http.ResponseWriter
	tap    *tap
	i      int
	tick   *time.Ticker // paces writes when the tap is capped
	budget int          // bytes that may go out before the next tick
}

// tapStep is the pace of a capped tap: rate/100 bytes every 10 ms, as a
// link delivers them.
const tapStep = 10 * time.Millisecond

func (w *tapWriter) WriteHeader(code int) {
	w.tap.mu.Lock()
	if w.tap.seen[w.i].Status == 0 {
		w.tap.seen[w.i].Status = code
	}
	w.tap.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *tapWriter) Write(p []byte) (int, error) {
	if w.tick == nil {
		return w.write(p)
	}
	written := 0
	for len(p) > 0 {
		if w.budget == 0 {
			<-w.tick.C
			w.budget = max(w.tap.rate/int(time.Second/tapStep), 1)
		}
		n, err := w.write(p[:min(w.budget, len(p))])
		written, w.budget, p = written+n, w.budget-n, p[n:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (w *tapWriter) write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.tap.mu.Lock()
	if w.tap.seen[w.i].Status == 0 {
		w.tap.seen[w.i].Status = http.StatusOK
	}
	w.tap.seen[w.i].Sent += int64(n)
	w.tap.mu.Unlock()
	return n, err
}

// Unwrap lets the reverse proxy flush through the tap.
func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
