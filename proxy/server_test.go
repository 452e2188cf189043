package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy/admin/admintest"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// fixture is pullgate in front of a real distribution registry with token
// auth and CDN redirects, on a real scanner and real stores.
type fixture struct {
	hub    *testregistry.Registry
	srv    *Server
	url    string
	blobs  *storage.Blobs
	store  storage.Store
	client *http.Client
}

func newFixture(t testing.TB, mods ...func(*Options, *scanner.Options)) *fixture {
	t.Helper()
	hub := testregistry.Start(t)
	blobs, store := testStores(t)
	opts := Options{Options: gate.Options{
		Upstreams: map[string]*upstream.Registry{"docker.io": loopbackUpstream(t, hub.URL())},
		Blobs:     blobs,
		Verdicts:  store,
		Locks:     store,
		Releases:  store,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}}
	sopts := scanner.Options{Workers: 2}
	for _, m := range mods {
		m(&opts, &sopts)
	}
	sc, err := scanner.New(sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	opts.Scanner = sc
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &fixture{hub: hub, srv: srv, url: ts.URL, blobs: blobs, store: store, client: ts.Client()}
}

func (f *fixture) do(t *testing.T, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return admintest.Request(t, f.client, f.url, method, path, "", nil, hdr...)
}

// ociError decodes an OCI error body.
func ociError(t *testing.T, body []byte) (code, message string) {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", body)
	}
	return e.Errors[0].Code, e.Errors[0].Message
}

func TestPingAndReadOnly(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, "GET", "/v2/")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("ping: %d %v", resp.StatusCode, resp.Header)
	}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		resp, body := f.do(t, m, "/v2/library/alpine/blobs/uploads/")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d", m, resp.StatusCode)
		}
		if code, _ := ociError(t, body); code != "UNSUPPORTED" {
			t.Errorf("%s: code %s", m, code)
		}
	}
}

func TestCleanImageServedExactly(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("clean")
	mdgst := f.hub.Push(t, "library/clean", "1.0", img)
	wantType, wantBody := f.hub.Manifest(t, "library/clean", mdgst.String())

	// The short Docker Hub name, as a Docker daemon asks a mirror.
	resp, body := f.do(t, "GET", "/v2/clean/manifests/1.0", "Accept", wantType)
	if resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, body)
	}
	if string(body) != string(wantBody) || resp.Header.Get("Docker-Content-Digest") != mdgst.String() ||
		resp.Header.Get("Content-Type") != wantType || resp.Header.Get("Content-Length") != fmt.Sprint(len(wantBody)) {
		t.Fatalf("manifest served differently: %v", resp.Header)
	}
	head, hbody := f.do(t, "HEAD", "/v2/library/clean/manifests/"+mdgst.String())
	if head.StatusCode != 200 || len(hbody) != 0 || head.Header.Get("Docker-Content-Digest") != mdgst.String() {
		t.Fatalf("HEAD by digest: %d %v", head.StatusCode, head.Header)
	}

	for _, layer := range img.Layers {
		d := digest.FromBytes(layer)
		resp, body := f.do(t, "GET", "/v2/library/clean/blobs/"+d.String())
		if resp.StatusCode != 200 || digest.FromBytes(body) != d || resp.Header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("blob %s: %d", d, resp.StatusCode)
		}
		resp, body = f.do(t, "GET", "/v2/library/clean/blobs/"+d.String(), "Range", "bytes=10-19")
		if resp.StatusCode != http.StatusPartialContent || string(body) != string(layer[10:20]) {
			t.Fatalf("range: %d %q", resp.StatusCode, body)
		}
	}
}

func httptestClient() *http.Client { return &http.Client{Timeout: time.Minute} }
