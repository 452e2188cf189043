package proxy

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// mutableSet is a known-bad list a test changes while a request waits.
type mutableSet struct {
	mu sync.Mutex
	ds map[digest.Digest]bool
}

func (s *mutableSet) Has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ds[d]
}

func (s *mutableSet) add(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ds[d] = true
}

// What an operator or the known-bad list says while a request is held
// applies to its answer: a deny, or a listing, made while a layer is still
// being fetched refuses the image (or the blob) that request is waiting
// for, as a rule reloaded meanwhile does.
func TestSayMadeWhileWaitingApplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		blob bool // ask for the slow layer itself, not the manifest
		say  func(f *fixture, kb *mutableSet, manifest, cached, slow digest.Digest)
	}{
		{"deny on the manifest", false, func(f *fixture, _ *mutableSet, m, _, _ digest.Digest) { deny(t, f, m) }},
		{"deny on a cached layer", false, func(f *fixture, _ *mutableSet, _, c, _ digest.Digest) { deny(t, f, c) }},
		{"manifest listed known-bad", false, func(_ *fixture, kb *mutableSet, m, _, _ digest.Digest) { kb.add(m) }},
		{"cached layer listed known-bad", false, func(_ *fixture, kb *mutableSet, _, c, _ digest.Digest) { kb.add(c) }},
		{"deny on the blob asked for", true, func(f *fixture, _ *mutableSet, _, _, s digest.Digest) { deny(t, f, s) }},
		{"blob asked for listed known-bad", true, func(_ *fixture, kb *mutableSet, _, _, s digest.Digest) { kb.add(s) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kb := &mutableSet{ds: map[digest.Digest]bool{}}
			f := newFixture(t, func(o *Options, _ *scanner.Options) { o.KnownBad = kb })
			cachedLayer := testregistry.Layer(testregistry.File{Path: "etc/base", Data: []byte("a shared base layer")})
			f.hub.Push(t, "library/base", "1", testregistry.Image{Layers: [][]byte{cachedLayer}})
			if resp, body := f.do(t, "GET", "/v2/library/base/manifests/1"); resp.StatusCode != http.StatusOK {
				t.Fatalf("base: %d %s", resp.StatusCode, body)
			}
			img := testregistry.Image{Layers: [][]byte{cachedLayer,
				testregistry.Layer(testregistry.File{Path: "etc/slow", Data: []byte("the slow layer")})}}
			m := f.hub.Push(t, "library/app", "1", img)
			cached, slow := digest.FromBytes(cachedLayer), digest.FromBytes(img.Layers[1])
			release := make(chan struct{})
			f.hub.Fault(slow, testregistry.Fault{Block: release, Times: 1})

			path := "/v2/library/app/manifests/1"
			if tc.blob {
				path = "/v2/library/app/blobs/" + slow.String()
				// The blob is linked to the repository by its manifest,
				// which is judged first (the slow layer held, then
				// answered "still scanning" or held on).
				go f.do(t, "GET", "/v2/library/app/manifests/1")
			}
			done := make(chan int, 1)
			go func() {
				resp, _ := f.do(t, "GET", path)
				done <- resp.StatusCode
			}()
			testsync.WaitFor(t, 10*time.Second, "the slow layer's ingest to start", func() bool {
				for _, fl := range f.srv.gate.Scans() {
					if fl.Digest == slow {
						return true
					}
				}
				return false
			})
			tc.say(f, kb, m, cached, slow)
			close(release)
			if got := <-done; got != http.StatusForbidden {
				t.Fatalf("%s made while the request waited: answered %d, want 403", tc.name, got)
			}
		})
	}
}

func deny(t *testing.T, f *fixture, d digest.Digest) {
	t.Helper()
	o := storage.Override{Subject: d.String(), Action: storage.Deny, Reason: "found by hand", Actor: "test", Time: time.Now().UTC()}
	if err := f.store.PutOverride(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}
