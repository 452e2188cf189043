package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
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

func newFixture(t *testing.T, mods ...func(*Options, *scanner.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	hub := testregistry.Start(t)
	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: hub.URL()})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "verdicts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	opts := Options{
		Upstreams: map[string]*upstream.Registry{"docker.io": up},
		Blobs:     blobs,
		Verdicts:  store,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
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
	req, err := http.NewRequest(method, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
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

func TestMinerLayerRefused(t *testing.T) {
	f := newFixture(t)
	img := testregistry.MinerImage("miner")
	mdgst := f.hub.Push(t, "someone/tool", "latest", img)
	bad := digest.FromBytes(img.Layers[2])

	resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/latest")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	code, msg := ociError(t, body)
	if code != "DENIED" {
		t.Fatalf("code %s", code)
	}
	for _, want := range []string{"docker.io/someone/tool@" + mdgst.String(), "blocked", "layer " + bad.String(), "file /usr/bin/kworker", "matched "} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	head, hbody := f.do(t, "HEAD", "/v2/someone/tool/manifests/latest")
	if head.StatusCode != http.StatusForbidden || len(hbody) != 0 {
		t.Fatalf("HEAD: %d %q", head.StatusCode, hbody)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("blocked blob served: %d", resp.StatusCode)
	}
	if _, err := f.blobs.Stat(context.Background(), bad); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("blocked layer is in the store: %v", err)
	}
	// The clean layers of the image are stored and can be served: they are
	// clean on their own, and other images may share them.
	if _, err := f.blobs.Stat(context.Background(), digest.FromBytes(img.Layers[0])); err != nil {
		t.Fatalf("clean layer not stored: %v", err)
	}
}

func TestMinerInConfigRefused(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("cmd")
	img.Config = ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: samples.MinerCmd()}}
	f.hub.Push(t, "someone/web", "v1", img)
	resp, body := f.do(t, "GET", "/v2/someone/web/manifests/v1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "config sha256:") || !strings.Contains(msg, "Entrypoint") {
		t.Fatalf("message %q should name the config and Entrypoint", msg)
	}
}

func TestConcurrentColdPullsFetchEachBlobOnce(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("busy")
	f.hub.Push(t, "library/busy", "1", img)
	var wg sync.WaitGroup
	codes := make(chan int, 10)
	for range 10 {
		wg.Go(func() {
			resp, _ := f.do(t, "GET", "/v2/library/busy/manifests/1")
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a pull got %d", c)
		}
	}
	for _, l := range img.Layers {
		if n := f.hub.CDNGets(digest.FromBytes(l)); n != 1 {
			t.Errorf("layer fetched %d times from upstream", n)
		}
	}
	// A second pull, blobs included, fetches nothing more.
	f.do(t, "GET", "/v2/library/busy/manifests/1")
	for _, l := range img.Layers {
		d := digest.FromBytes(l)
		if resp, _ := f.do(t, "GET", "/v2/library/busy/blobs/"+d.String()); resp.StatusCode != 200 {
			t.Fatalf("blob: %d", resp.StatusCode)
		}
		if n := f.hub.CDNGets(d); n != 1 {
			t.Errorf("warm pull fetched a layer again (%d)", n)
		}
	}
}

func TestUpstreamCorruptionRefusedAndNotCached(t *testing.T) {
	for name, fault := range map[string]testregistry.Fault{
		"wrong digest": {Corrupt: true, Times: 1},
		"truncated":    {Truncate: true, Times: 1},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			img := testregistry.CleanImage(name)
			f.hub.Push(t, "library/flaky", "1", img)
			d := digest.FromBytes(img.Layers[1])
			f.hub.Fault(d, fault)

			resp, body := f.do(t, "GET", "/v2/library/flaky/manifests/1")
			if resp.StatusCode == 200 {
				t.Fatal("served an image whose layer did not verify")
			}
			if _, msg := ociError(t, body); !strings.Contains(msg, d.String()) {
				t.Errorf("message %q does not name the layer", msg)
			}
			if _, err := f.blobs.Stat(context.Background(), d); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("bad bytes were stored: %v", err)
			}
			if _, err := f.store.Verdict(context.Background(), d, f.srv.scanner().RulesetID()); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a verdict was kept for bytes that did not verify: %v", err)
			}
			// The fault was once: the retry fetches the right bytes.
			if resp, body := f.do(t, "GET", "/v2/library/flaky/manifests/1"); resp.StatusCode != 200 {
				t.Fatalf("retry: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestStillScanningAnswersRetryLater(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.Hold = 300 * time.Millisecond; o.RetryAfter = 2 * time.Second })
	img := testregistry.CleanImage("slow")
	f.hub.Push(t, "library/slow", "1", img)
	release := make(chan struct{})
	f.hub.Fault(digest.FromBytes(img.Layers[1]), testregistry.Fault{Block: release})

	resp, body := f.do(t, "GET", "/v2/library/slow/manifests/1", "User-Agent", "containerd/v1.7.0")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if code, msg := ociError(t, body); code != "TOOMANYREQUESTS" || !strings.Contains(msg, "still being scanned") {
		t.Fatalf("%s: %s", code, msg)
	}
	close(release)
	// The scan went on without the client; the retry gets the image.
	waitFor(t, 10*time.Second, "the held image to be served", func() bool {
		resp, _ := f.do(t, "GET", "/v2/library/slow/manifests/1")
		return resp.StatusCode == 200
	})
	if n := f.hub.CDNGets(digest.FromBytes(img.Layers[1])); n != 1 {
		t.Fatalf("layer fetched %d times", n)
	}
}

func TestUnknownBlobIsScannedBeforeItIsServed(t *testing.T) {
	f := newFixture(t)
	clean := f.hub.PushBlob(t, "library/raw", testregistry.Layer(testregistry.File{Path: "a", Data: []byte("a")}))
	bad := f.hub.PushBlob(t, "library/raw", testregistry.Layer(testregistry.File{Path: "opt/x/xmrig", Mode: 0o755, Data: samples.XMRig()}))
	if resp, _ := f.do(t, "GET", "/v2/library/raw/blobs/"+clean.String()); resp.StatusCode != 200 {
		t.Fatalf("clean blob: %d", resp.StatusCode)
	}
	resp, body := f.do(t, "GET", "/v2/library/raw/blobs/"+bad.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner blob: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "/opt/x/xmrig") {
		t.Fatalf("message %q", msg)
	}
}

func TestScanLimitRefusesWithReason(t *testing.T) {
	f := newFixture(t, func(_ *Options, s *scanner.Options) { s.Limits.MaxFiles = 2 })
	img := testregistry.Image{Layers: [][]byte{testregistry.Layer(
		testregistry.File{Path: "a", Data: []byte("1")}, testregistry.File{Path: "b", Data: []byte("2")},
		testregistry.File{Path: "c", Data: []byte("3")})}}
	f.hub.Push(t, "library/many", "1", img)
	resp, body := f.do(t, "GET", "/v2/library/many/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "could not be scanned") {
		t.Fatalf("message %q", msg)
	}
}

func TestIndexServedAndPlatformGated(t *testing.T) {
	f := newFixture(t)
	good := f.hub.Push(t, "library/multi", "", testregistry.CleanImage("amd64"))
	bad := f.hub.Push(t, "library/multi", "", testregistry.MinerImage("miner"))
	idx := f.hub.PushIndex(t, "library/multi", "1", map[string]digest.Digest{"linux/amd64": good, "linux/arm64": bad})
	resp, _ := f.do(t, "GET", "/v2/library/multi/manifests/1")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != idx.String() {
		t.Fatalf("index: %d", resp.StatusCode)
	}
	// Serving the index pre-scans both platforms in the background.
	waitFor(t, 20*time.Second, "both platforms to be prefetched", func() bool {
		_, errGood := f.store.Verdict(context.Background(), digest.FromBytes(testregistry.CleanImage("amd64").Layers[0]), f.srv.scanner().RulesetID())
		_, errBad := f.store.Verdict(context.Background(), digest.FromBytes(testregistry.MinerImage("miner").Layers[2]), f.srv.scanner().RulesetID())
		return errGood == nil && errBad == nil
	})
	if resp, _ := f.do(t, "GET", "/v2/library/multi/manifests/"+good.String()); resp.StatusCode != 200 {
		t.Fatalf("clean platform: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/multi/manifests/"+bad.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner platform: %d", resp.StatusCode)
	}
}

func TestTagsResolvedByHeadAndCached(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.TagTTL = time.Hour })
	f.hub.Push(t, "library/tagged", "1", testregistry.CleanImage("tag"))
	head := func() {
		if resp, _ := f.do(t, "HEAD", "/v2/library/tagged/manifests/1"); resp.StatusCode != 200 {
			t.Fatalf("HEAD %d", resp.StatusCode)
		}
	}
	head()
	first := f.hub.ManifestHeads("library/tagged", "1") // the token challenge may add one
	if first == 0 {
		t.Fatal("the tag was not resolved upstream")
	}
	head()
	head()
	if n := f.hub.ManifestHeads("library/tagged", "1"); n != first {
		t.Errorf("%d more upstream HEADs for one tag within its TTL", n-first)
	}
	if n := f.hub.ManifestGets("library/tagged", "1"); n != 0 {
		t.Errorf("%d upstream GETs by tag: tags must resolve by HEAD", n)
	}
}

func TestLastKnownTagServedWhileUpstreamIsDown(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.TagTTL = time.Nanosecond })
	f.hub.Push(t, "library/steady", "1", testregistry.CleanImage("steady"))
	if resp, _ := f.do(t, "GET", "/v2/library/steady/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("first pull: %d", resp.StatusCode)
	}
	f.hub.SetDown(true)
	if resp, body := f.do(t, "GET", "/v2/library/steady/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("cached image while upstream is down: %d %s", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/never-seen/manifests/1"); resp.StatusCode == 200 {
		t.Fatal("an image never seen was served while upstream is down")
	}
}

func TestNamesAndRegistries(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		path   string
		status int
		code   string
	}{
		{"/v2/library/x/manifests/" + strings.Repeat("a", 200), 400, "MANIFEST_INVALID"},
		{"/v2/Upper/x/manifests/1", 400, "NAME_INVALID"},
		{"/v2/library/x/blobs/sha256:nothex", 400, "DIGEST_INVALID"},
		{"/v2/library/x/manifests/1?ns=evil.example.com", 403, "DENIED"},
		{"/v2/evil.example.com/x/manifests/1", 403, "DENIED"},
		{"/v2/_catalog", 405, "UNSUPPORTED"},
		{"/v2/library/x/nothing", 404, "NAME_UNKNOWN"},
		{"/v2/library/..%2f..%2fetc/manifests/1", 400, "NAME_INVALID"},
		{"/v2/library/a//b/manifests/1", 400, "NAME_INVALID"},
		{"/v2/" + strings.Repeat("a/", 130) + "b/manifests/1", 400, "NAME_INVALID"},
		{"/v2/library/x/manifests/sha256:" + strings.Repeat("0", 65), 400, "MANIFEST_INVALID"},
		{"/v2/library/x/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"},
	}
	for _, c := range cases {
		resp, body := f.do(t, "GET", c.path)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.path, resp.StatusCode, c.status, body)
			continue
		}
		if code, _ := ociError(t, body); code != c.code {
			t.Errorf("%s: code %s, want %s", c.path, code, c.code)
		}
	}
	// ?ns=docker.io and an explicit docker.io prefix route to Docker Hub.
	f.hub.Push(t, "library/routed", "1", testregistry.CleanImage("routed"))
	for _, p := range []string{"/v2/routed/manifests/1?ns=docker.io", "/v2/docker.io/library/routed/manifests/1"} {
		if resp, body := f.do(t, "GET", p); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
}

func TestTagList(t *testing.T) {
	f := newFixture(t)
	f.hub.Push(t, "library/listed", "a", testregistry.CleanImage("a"))
	f.hub.Push(t, "library/listed", "b", testregistry.CleanImage("b"))
	resp, body := f.do(t, "GET", "/v2/listed/tags/list")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var tl struct {
		Name string
		Tags []string
	}
	if err := json.Unmarshal(body, &tl); err != nil || len(tl.Tags) != 2 {
		t.Fatalf("%s %v", body, err)
	}
}

func TestRulesetChangeRescansFromLocalStore(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("rescan")
	f.hub.Push(t, "library/rescan", "1", img)
	if resp, _ := f.do(t, "GET", "/v2/library/rescan/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("first pull")
	}
	// New rules that make the motd file a finding.
	f.newRules(t, "TestMotd", "hello rescan")

	resp, body := f.do(t, "GET", "/v2/library/rescan/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after new rules: %d %s", resp.StatusCode, body)
	}
	d := digest.FromBytes(img.Layers[0])
	if n := f.hub.CDNGets(d); n != 1 {
		t.Errorf("rescan fetched the layer again (%d): it should read the local copy", n)
	}
	if _, err := f.blobs.Stat(context.Background(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a layer now found bad is still in the store")
	}
}

func writeRule(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelativeLink(t *testing.T) {
	for in, want := range map[string]string{
		`<https://registry-1.docker.io/v2/library/a/tags/list?last=b&n=1>; rel="next"`: `</v2/library/a/tags/list?last=b&n=1>; rel="next"`,
		`</v2/library/a/tags/list?last=b&n=1>; rel="next"`:                             `</v2/library/a/tags/list?last=b&n=1>; rel="next"`,
		`<https://evil.example/elsewhere>; rel="next"`:                                 ``,
		`garbage`: ``,
	} {
		if got := relativeLink(in); got != want {
			t.Errorf("relativeLink(%q) = %q, want %q", in, got, want)
		}
	}
}

// In gateway mode the Host header names the registry.
func TestHostNamesTheRegistry(t *testing.T) {
	f := newFixture(t)
	f.hub.Push(t, "library/hosted", "1", testregistry.CleanImage("hosted"))
	for _, host := range []string{"registry-1.docker.io", "index.docker.io:443"} {
		req, _ := http.NewRequest("GET", f.url+"/v2/library/hosted/manifests/1", nil)
		req.Host = host
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Host %s: %d", host, resp.StatusCode)
		}
	}
	// The gateway refuses a host it does not serve, and never dials it.
	gw := httptest.NewServer(f.srv.GatewayHandler())
	defer gw.Close()
	req, _ := http.NewRequest("GET", gw.URL+"/v2/library/hosted/manifests/1", nil)
	req.Host = "ghcr.io"
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("gateway, unconfigured Host: %d", resp.StatusCode)
	}
}

func httptestClient() *http.Client { return &http.Client{Timeout: time.Minute} }

func TestOperatorOverrides(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	img := testregistry.MinerImage("miner")
	mdgst := f.hub.Push(t, "someone/tool", "1", img)
	bad := digest.FromBytes(img.Layers[2])
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner image served: %d", resp.StatusCode)
	}

	// Allow the image and its blocked layer: both are served, the layer as
	// upstream has it.
	for _, subject := range []string{mdgst.String(), bad.String()} {
		if err := f.store.PutOverride(ctx, storage.Override{Subject: subject, Action: storage.Allow, Reason: "vendor's test fixture", Actor: "admin", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("allowed image: %d %s", resp.StatusCode, body)
	}
	resp, body := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String())
	if resp.StatusCode != 200 || digest.FromBytes(body) != bad {
		t.Fatalf("allowed layer: %d", resp.StatusCode)
	}
	// Without the override the layer is refused again, although it is stored.
	if err := f.store.DeleteOverride(ctx, bad.String()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("layer served after its override was removed: %d", resp.StatusCode)
	}

	// Deny a repository: clean content in it is refused too, and the deny
	// wins over an allow on the digest.
	clean := f.hub.Push(t, "someone/tool", "clean", testregistry.CleanImage("deny"))
	if err := f.store.PutOverride(ctx, storage.Override{Subject: "docker.io/someone/tool", Action: storage.Deny, Reason: "known-bad publisher", Actor: "admin", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	resp, body = f.do(t, "GET", "/v2/someone/tool/manifests/"+clean.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied repository served: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "known-bad publisher") || !strings.Contains(msg, "denied by operator admin") {
		t.Fatalf("message %q", msg)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("deny on the repository must win over allow on the digest: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+digest.FromBytes(img.Layers[0]).String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("blob of a denied repository served: %d", resp.StatusCode)
	}
}

type digestList []digest.Digest

func (l digestList) Has(d digest.Digest) bool { return slices.Contains(l, d) }

func TestPublisherPolicyAndKnownBad(t *testing.T) {
	img := testregistry.Image{Layers: [][]byte{
		testregistry.Layer(testregistry.File{Path: "etc/motd", Data: []byte("shared base")}),
		testregistry.Layer(testregistry.File{Path: "opt/known/tool", Data: []byte("a layer on the known-bad list")}),
	}}
	known := digest.FromBytes(img.Layers[1])
	f := newFixture(t, func(o *Options, _ *scanner.Options) {
		o.Policy = map[string]RepoPolicy{"docker.io": {
			Allow: []string{"library/*", "goodcorp/**"},
			Deny:  []string{"library/evil*"},
		}}
		o.KnownBad = digestList{known}
	})
	for _, repo := range []string{"library/ok", "goodcorp/team/app", "library/evilbox", "docker123321/xmr"} {
		f.hub.Push(t, repo, "1", testregistry.CleanImage(repo))
	}
	cases := []struct {
		path, want string
		status     int
	}{
		{"/v2/ok/manifests/1", "", 200},
		{"/v2/goodcorp/team/app/manifests/1", "", 200},
		{"/v2/library/evilbox/manifests/1", `deny pattern "library/evil*"`, 403},
		{"/v2/docker123321/xmr/manifests/1", "not on the allow list of docker.io", 403},
		{"/v2/docker123321/xmr/blobs/" + digest.FromBytes(img.Layers[0]).String(), "not on the allow list", 403},
	}
	for _, c := range cases {
		resp, body := f.do(t, "GET", c.path)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", c.path, resp.StatusCode, c.status)
			continue
		}
		if c.want != "" {
			if _, msg := ociError(t, body); !strings.Contains(msg, c.want) {
				t.Errorf("%s: message %q lacks %q", c.path, msg, c.want)
			}
		}
	}
	if f.hub.ManifestHeads("docker123321/xmr", "1") != 0 {
		t.Error("a repository refused by policy was looked up upstream")
	}

	f.hub.Push(t, "library/known", "1", img)
	resp, body := f.do(t, "GET", "/v2/library/known/manifests/1")
	if resp.StatusCode != 403 {
		t.Fatalf("image with a known-bad layer: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, known.String()+" is on the known-bad list") {
		t.Fatalf("message %q", msg)
	}
	if f.hub.CDNGets(known) != 0 {
		t.Error("a known-bad layer was fetched")
	}
}

func TestRescanUnderNewRulesRemovesWhatIsNowBad(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("retro")
	f.hub.Push(t, "library/retro", "1", img)
	if resp, _ := f.do(t, "GET", "/v2/library/retro/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("first pull")
	}
	f.newRules(t, "TestRetro", "hello retro")

	rep, err := f.srv.Rescan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := digest.FromBytes(img.Layers[0])
	// Config and two layers were stored; all three are rescanned.
	if rep.Checked != 3 || rep.Scanned != 3 || rep.Failed != 0 || len(rep.Refused) != 1 || rep.Refused[0] != bad {
		t.Fatalf("report %+v", rep)
	}
	if _, err := f.blobs.Stat(context.Background(), bad); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("the now-bad layer is still stored")
	}
	if n := f.hub.CDNGets(bad); n != 1 {
		t.Fatalf("the rescan fetched from upstream (%d)", n)
	}
	// A second rescan finds nothing left to do.
	rep, err = f.srv.Rescan(context.Background())
	if err != nil || rep.Scanned != 0 || rep.Checked != 2 {
		t.Fatalf("second rescan %+v %v", rep, err)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/retro/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("image served after its layer was found bad: %d", resp.StatusCode)
	}
}

// Evidence adds up across layers: two different medium indicators in two
// layers block the image though each layer passes alone; a low finding
// only warns, and the image is served with an OCI Warning header.
func TestImageDecisionAddsUpEvidenceAcrossLayers(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "test.yar")
	writeRule(t, rules, `
rule TestMediumA { meta: category = "miner" severity = "medium" description = "first hint" strings: $a = "HINT-ALPHA" condition: $a }
rule TestMediumB { meta: category = "pool" severity = "medium" description = "second hint" strings: $a = "HINT-BRAVO" condition: $a }
rule TestLow { meta: category = "wallet" severity = "low" description = "a wallet" strings: $a = "HINT-LOW" condition: $a }
`)
	f := newFixture(t, func(_ *Options, s *scanner.Options) { s.RulePaths = []string{rules} })
	layer := func(name, content string) []byte {
		return testregistry.Layer(testregistry.File{Path: name, Data: []byte(content)})
	}
	two := testregistry.Image{Layers: [][]byte{layer("a.txt", "HINT-ALPHA"), layer("b.txt", "HINT-BRAVO")}}
	f.hub.Push(t, "library/two", "1", two)
	resp, body := f.do(t, "GET", "/v2/library/two/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("two medium indicators in two layers: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "TestMedium") || !strings.Contains(msg, "(and 1 more)") {
		t.Fatalf("message %q", msg)
	}
	// Each layer alone is fine, and can be served to images that use it.
	if resp, _ := f.do(t, "GET", "/v2/library/two/blobs/"+digest.FromBytes(two.Layers[0]).String()); resp.StatusCode != 200 {
		t.Fatalf("a layer with one medium finding: %d", resp.StatusCode)
	}

	one := testregistry.Image{Layers: [][]byte{layer("a.txt", "HINT-ALPHA"), layer("w.txt", "HINT-LOW")}}
	f.hub.Push(t, "library/one", "1", one)
	resp, _ = f.do(t, "GET", "/v2/library/one/manifests/1")
	if resp.StatusCode != 200 {
		t.Fatalf("one medium and one low: %d", resp.StatusCode)
	}
	warnings := strings.Join(resp.Header.Values("Warning"), "\n")
	if !strings.Contains(warnings, `299 - "pullgate: docker.io/library/one`) || !strings.Contains(warnings, "TestLow") || !strings.Contains(warnings, "TestMediumA") {
		t.Fatalf("Warning headers %q", warnings)
	}
}

// The policy is applied to stored findings when deciding, so changing it
// needs no rescan: a category set to "block" refuses at once.
func TestCategoryActionFromPolicy(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "test.yar")
	writeRule(t, rules, `rule TestLowPool { meta: category = "pool" severity = "low" description = "pool host" strings: $a = "HINT-POOL" condition: $a }`)
	f := newFixture(t, func(o *Options, s *scanner.Options) {
		s.RulePaths = []string{rules}
		o.Decision = scanner.Policy{Actions: map[string]scanner.Action{"pool": scanner.ActionBlock}}
	})
	f.hub.Push(t, "library/pool", "1", testregistry.Image{Layers: [][]byte{testregistry.Layer(testregistry.File{Path: "etc/hosts", Data: []byte("HINT-POOL")})}})
	if resp, _ := f.do(t, "GET", "/v2/library/pool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("category set to block: %d", resp.StatusCode)
	}
}

// A layer found bad by a rescan is reported with the images that carry it
// and the clients the audit log says pulled them.
func TestRetroactiveBlockNamesWhoPulledIt(t *testing.T) {
	audit, err := storage.OpenFileAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.Admin.Audit = audit })
	img := testregistry.CleanImage("told")
	mdgst := f.hub.Push(t, "library/told", "1", img)
	if resp, _ := f.do(t, "GET", "/v2/library/told/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("first pull")
	}
	waitFor(t, 10*time.Second, "the pull in the audit log", func() bool {
		recs, err := audit.Query(context.Background(), storage.AuditQuery{Digest: mdgst, Kind: storage.AuditPull})
		return err == nil && len(recs) == 1
	})
	f.newRules(t, "TestTold", "hello told")
	if _, err := f.srv.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got *Event
	for _, ev := range f.srv.live.recent(50) {
		if ev.Decision == "retroactive-block" {
			got = &ev
			break
		}
	}
	if got == nil {
		t.Fatal("no retroactive-block event")
	}
	for _, want := range []string{"docker.io/library/told@" + mdgst.String(), "pulled before by 127.0.0.1", digest.FromBytes(img.Layers[0]).String()} {
		if !strings.Contains(got.Reason, want) {
			t.Errorf("reason %q lacks %q", got.Reason, want)
		}
	}
}

// newRules swaps in a ruleset whose one rule, name, blocks any file that
// contains needle: what an operator's new rules do to a cached image.
func (f *fixture) newRules(t *testing.T, name, needle string) {
	t.Helper()
	rule := filepath.Join(t.TempDir(), name+".yar")
	writeRule(t, rule, `rule `+name+` { meta: category = "miner" severity = "high" description = "test rule" strings: $a = "`+needle+`" condition: $a }`)
	sc, err := scanner.New(scanner.Options{Workers: 1, RulePaths: []string{rule}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	old := f.srv.SetScanner(sc)
	t.Cleanup(func() { old.Close() })
}
