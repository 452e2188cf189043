package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// Past MaxConcurrent, requests wait in line instead of failing, and an open
// blob body holds its slot until it is closed.
func TestMaxConcurrentQueuesRequests(t *testing.T) {
	var open, peak atomic.Int32
	release := make(chan struct{})
	srv := faultServerWith(t, Config{MaxConcurrent: 2}, func(w http.ResponseWriter, req *http.Request) {
		n := open.Add(1)
		defer open.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "hello")
	})

	const clients = 5
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			rc, _, err := srv.Blob(context.Background(), "library/alpine", digest.FromString("x"))
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err == nil && string(b) != "hello" {
				err = errors.New("wrong body " + string(b))
			}
			errs <- err
		})
	}
	// A slot is taken before its request reaches upstream: wait for both
	// requests to arrive there too, or a release could end the first one
	// before the second is seen.
	testsync.WaitFor(t, 5*time.Second, "two requests open upstream and three waiting", func() bool {
		l := srv.Load()
		return l.InFlight == 2 && l.Waiting == clients-2 && peak.Load() == 2
	})
	if l := srv.Load(); l.Max != 2 {
		t.Fatalf("Load = %+v, want Max 2", l)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a queued request failed: %v", err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("upstream saw %d requests at once, want 2", p)
	}
	if l := srv.Load(); l.InFlight != 0 || l.Waiting != 0 {
		t.Errorf("slots not released: %+v", l)
	}
}

// A request waiting for a slot gives up when its context ends, and the
// error says why.
func TestMaxConcurrentWaitEndsWithContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	r := faultServerWith(t, Config{MaxConcurrent: 1}, func(w http.ResponseWriter, req *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
	})
	rc, _, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err = r.Blob(ctx, "library/alpine", digest.FromString("y"))
	if err == nil || !strings.Contains(err.Error(), "connection slot") {
		t.Fatalf("err = %v, want a wait for a connection slot that timed out", err)
	}
}

// An identity token (Config.Token) is exchanged at the token service with
// the refresh_token grant, and never shows in an error.
func TestTokenCredential(t *testing.T) {
	const user, secret = "pullbot", "identity-token-0123456789"
	hub := testregistry.Start(t, testregistry.WithCredentials(user, secret))
	img := testregistry.Image{Layers: [][]byte{testregistry.Layer(testregistry.File{Path: "a", Data: []byte("a")})}}
	want := hub.Push(t, "team/app", "1", img)

	r, err := New(Config{Name: "registry.example.test", URL: hub.URL(), Username: user, Token: secret})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := r.Resolve(context.Background(), "team/app", "1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want {
		t.Fatalf("resolved %s, want %s", desc.Digest, want)
	}
	if reqs := hub.TokenRequests(); len(reqs) == 0 || reqs[len(reqs)-1].User != user {
		t.Fatalf("token requests %+v, want one as %s", reqs, user)
	}

	bad, err := New(Config{Name: "registry.example.test", URL: hub.URL(), Username: user, Token: "wrong-" + secret})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Resolve(context.Background(), "team/app", "1", nil)
	if !IsUnauthorized(err) {
		t.Fatalf("err = %v, want unauthorized", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the token leaked into an error: %v", err)
	}
}

func faultServerWith(t *testing.T, cfg Config, h http.HandlerFunc) *Registry {
	t.Helper()
	_, srv := faultServer(t, h)
	cfg.Name, cfg.URL, cfg.Timeout = "docker.io", srv.URL, 5*time.Second
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.backoff = time.Millisecond
	return r
}
