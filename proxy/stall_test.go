package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
)

// stallingRegistry is an upstream whose blob downloads, while stalling is
// set, send 10 bytes and then nothing (until the client gives up, the
// registry recovers, or the test ends). Each tag names one image.
type stallingRegistry struct {
	stalling  atomic.Bool
	recovered chan struct{}
	once      sync.Once

	manifests map[string]*testregistry.Built // by tag and by digest
	blobs     map[digest.Digest][]byte
}

func newStallingRegistry(t *testing.T, tags ...string) (*stallingRegistry, string) {
	t.Helper()
	s := &stallingRegistry{recovered: make(chan struct{}), manifests: map[string]*testregistry.Built{}, blobs: map[digest.Digest][]byte{}}
	for _, tag := range tags {
		img := testregistry.CleanImage(tag)
		for i := range 4 {
			img.Layers = append(img.Layers, testregistry.Layer(testregistry.File{Path: fmt.Sprintf("etc/%s-%d", tag, i), Data: []byte(tag)}))
		}
		b, err := img.Build()
		if err != nil {
			t.Fatal(err)
		}
		s.manifests[tag], s.manifests[b.Digest.String()] = b, b
		s.blobs[b.ConfigDigest] = b.Config
		for i, l := range b.Layers {
			s.blobs[l.Digest] = img.Layers[i]
		}
	}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(ts.Close)
	t.Cleanup(s.recover)
	return s, ts.URL
}

func (s *stallingRegistry) recover() { s.once.Do(func() { close(s.recovered) }) }

func (s *stallingRegistry) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	_, rest, _ := strings.Cut(r.URL.Path, "/manifests/")
	if b := s.manifests[rest]; b != nil {
		w.Header().Set("Content-Type", b.MediaType)
		w.Header().Set("Docker-Content-Digest", b.Digest.String())
		w.Header().Set("Content-Length", fmt.Sprint(len(b.Manifest)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(b.Manifest)
		}
		return
	}
	_, ref, _ := strings.Cut(r.URL.Path, "/blobs/")
	data, ok := s.blobs[digest.Digest(ref)]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	if !s.stalling.Load() {
		_, _ = w.Write(data)
		return
	}
	_, _ = w.Write(data[:10])
	w.(http.Flusher).Flush()
	select {
	case <-s.recovered:
	case <-r.Context().Done():
	}
}

// Stalled upstream bodies cannot starve pulls: with every connection slot
// held by a body that sent 10 bytes and stalled, a new pull gets its
// answer (429 or 503, with the reason) within the hold; the stalled bodies
// fail after the idle timeout and free their slots; and once the upstream
// recovers, pulls work.
func TestStalledUpstreamDoesNotStarvePulls(t *testing.T) {
	const hold = 3 * time.Second
	reg, url := newStallingRegistry(t, "a", "b", "c")
	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: url, MaxConcurrent: 2,
		SlotWait: 300 * time.Millisecond, IdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options, _ *scanner.Options) {
		o.Upstreams = map[string]*upstream.Registry{"docker.io": up}
		o.Hold, o.RetryAfter = hold, time.Second
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	reg.stalling.Store(true)

	// Pull a takes both slots with stalled bodies; pull b, made while
	// they stall, finds no slot.
	answered := make(chan string, 2)
	pull := func(tag string) {
		start := time.Now()
		resp, body := f.do(t, "GET", "/v2/library/"+tag+"/manifests/"+tag)
		answered <- fmt.Sprintf("%s: %d in %s, Retry-After %q: %s", tag, resp.StatusCode, time.Since(start).Round(time.Millisecond),
			resp.Header.Get("Retry-After"), body)
	}
	go pull("a")
	testsync.WaitFor(t, 5*time.Second, "both slots held by stalled bodies", func() bool { return up.Load().InFlight == 2 })
	go pull("b")
	for range 2 {
		select {
		case a := <-answered:
			t.Log(a)
			ok := (strings.Contains(a, ": 429 in") && !strings.Contains(a, `Retry-After ""`) && strings.Contains(a, "connection slot")) ||
				(strings.Contains(a, ": 503 in") && strings.Contains(a, "no bytes"))
			if !ok {
				t.Errorf("want 429 with Retry-After (slots taken) or 503 (stalled), with the reason; got %s", a)
			}
		case <-time.After(hold + 2*time.Second):
			reg.recover() // let the held requests end, so that the test can
			t.Fatalf("a pull got no answer within the %s hold", hold)
		}
	}
	testsync.WaitFor(t, 5*time.Second, "the stalled bodies to free their slots", func() bool { return up.Load().InFlight == 0 })

	reg.stalling.Store(false)
	reg.recover()
	for _, tag := range []string{"a", "c"} {
		if resp, body := f.do(t, "GET", "/v2/library/"+tag+"/manifests/"+tag); resp.StatusCode != 200 {
			t.Fatalf("pull %s after the upstream recovered: %d %s", tag, resp.StatusCode, body)
		}
	}
	if _, err := f.blobs.Stat(t.Context(), reg.manifests["a"].Layers[0].Digest); err != nil {
		t.Fatalf("layer not stored after the recovered pull: %v", err)
	}
}
