package testregistry

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/manifest/schema2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/testsync"
)

// client is a minimal registry client doing the token dance by hand, so the
// tests check the wire behaviour rather than a library's.
type client struct {
	t          *testing.T
	r          *Registry
	user, pass string
	token      string
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// login answers the Bearer challenge of GET /v2/ for scope.
func (c *client) login(scope string) (int, error) {
	resp, err := http.Get(c.r.URL() + "/v2/")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return 0, fmt.Errorf("GET /v2/ = %d, want 401", resp.StatusCode)
	}
	ch := resp.Header.Get("WWW-Authenticate")
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(ch, -1) {
		params[m[1]] = m[2]
	}
	if !strings.HasPrefix(ch, "Bearer ") || params["realm"] != c.r.URL()+"/token" || params["service"] != Service {
		return 0, fmt.Errorf("challenge %q", ch)
	}
	req, _ := http.NewRequest(http.MethodGet, params["realm"]+"?"+url.Values{"service": {params["service"]}, "scope": {scope}}.Encode(), nil)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	c.token = body.Token
	return resp.StatusCode, nil
}

func (c *client) do(method, path string, accept ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.r.URL()+path, nil)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil
	}
	return resp, body
}

func tinyImage(content string) Image {
	return Image{Layers: [][]byte{Layer(File{Path: "/etc/hello.txt", Data: []byte(content)})}}
}

func TestPushPullWithToken(t *testing.T) {
	r := Start(t)
	img := Image{Layers: [][]byte{
		Layer(File{Path: "usr/bin/hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hello\n")}),
		LayerZstd(File{Path: "etc/motd", Data: []byte("hi")}),
	}}
	b, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	mdgst := r.Push(t, "library/hello", "1.0", img)
	if mdgst != b.Digest {
		t.Fatalf("Push = %s, Build = %s", mdgst, b.Digest)
	}

	c := &client{t: t, r: r}
	// Without a token: a Bearer challenge.
	if resp, _ := c.do(http.MethodGet, "/v2/library/hello/manifests/1.0"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("manifest without token = %d", resp.StatusCode)
	}
	if code, err := c.login("repository:library/hello:pull"); err != nil || code != 200 {
		t.Fatalf("login = %d, %v", code, err)
	}

	resp, _ := c.do(http.MethodHead, "/v2/library/hello/manifests/1.0", schema2.MediaTypeManifest)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != mdgst.String() {
		t.Fatalf("HEAD manifest = %d %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	resp, raw := c.do(http.MethodGet, "/v2/library/hello/manifests/1.0", schema2.MediaTypeManifest)
	if resp.StatusCode != 200 || digest.FromBytes(raw) != mdgst {
		t.Fatalf("GET manifest = %d, digest %s want %s", resp.StatusCode, digest.FromBytes(raw), mdgst)
	}
	if got := resp.Header.Get("ratelimit-limit"); got != "100;w=21600" {
		t.Errorf("ratelimit-limit = %q", got)
	}
	if got := resp.Header.Get("ratelimit-remaining"); got != "99;w=21600" {
		t.Errorf("ratelimit-remaining = %q", got)
	}
	if r.ManifestGets("library/hello", "1.0") != 2 || r.ManifestHeads("library/hello", "1.0") != 1 {
		t.Errorf("manifest counters = %d GET, %d HEAD", r.ManifestGets("library/hello", "1.0"), r.ManifestHeads("library/hello", "1.0"))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		resp, body := c.do(http.MethodGet, "/v2/library/hello/blobs/"+d.Digest.String())
		if resp.StatusCode != 200 || digest.FromBytes(body) != d.Digest {
			t.Fatalf("blob %s = %d, digest %s", d.Digest, resp.StatusCode, digest.FromBytes(body))
		}
		if resp.Request.URL.Host == strings.TrimPrefix(r.URL(), "http://") || !strings.HasPrefix(resp.Request.URL.String(), r.CDNURL()) {
			t.Errorf("blob %s served from %s, want the CDN %s", d.Digest, resp.Request.URL, r.CDNURL())
		}
		if r.BlobGets(d.Digest) != 1 || r.CDNGets(d.Digest) != 1 {
			t.Errorf("blob %s: %d registry GETs, %d CDN GETs", d.Digest, r.BlobGets(d.Digest), r.CDNGets(d.Digest))
		}
		if d.Digest == m.Config.Digest {
			if err := json.Unmarshal(body, &cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || len(cfg.RootFS.DiffIDs) != 2 ||
		cfg.RootFS.DiffIDs[0] != digest.FromBytes(LayerTar(File{Path: "usr/bin/hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hello\n")})) {
		t.Errorf("config = %+v", cfg)
	}
	if m.Layers[1].MediaType != ocispec.MediaTypeImageLayerZstd || m.Layers[0].MediaType != schema2.MediaTypeLayer {
		t.Errorf("layer media types %s, %s", m.Layers[0].MediaType, m.Layers[1].MediaType)
	}

	// A blob GET without a token is refused at the registry, not redirected.
	anon := &client{t: t, r: r}
	if resp, _ := anon.do(http.MethodGet, "/v2/library/hello/blobs/"+m.Layers[0].Digest.String()); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous blob GET = %d, want 401", resp.StatusCode)
	}
}

func TestCredentials(t *testing.T) {
	r := Start(t, WithCredentials("alice", "s3cret"))
	r.Push(t, "alice/app", "v1", tinyImage("x"))
	for _, tc := range []struct {
		user, pass string
		want       int
	}{
		{"", "", http.StatusUnauthorized},
		{"alice", "wrong", http.StatusUnauthorized},
		{"alice", "s3cret", http.StatusOK},
	} {
		c := &client{t: t, r: r, user: tc.user, pass: tc.pass}
		code, err := c.login("repository:alice/app:pull")
		if err != nil || code != tc.want {
			t.Errorf("login as %q/%q = %d, %v; want %d", tc.user, tc.pass, code, err, tc.want)
		}
	}
	reqs := r.TokenRequests()
	if len(reqs) != 3 || reqs[2].User != "alice" || reqs[2].Scopes[0] != "repository:alice/app:pull" {
		t.Errorf("token requests = %+v", reqs)
	}
}

func TestFaults(t *testing.T) {
	r := Start(t)
	noise := make([]byte, 20000)
	rand.Read(noise)
	img := tinyImage(string(noise))
	r.Push(t, "library/f", "latest", img)
	layer := img.Layers[0]
	ld := digest.FromBytes(layer)
	c := &client{t: t, r: r}
	if _, err := c.login("repository:library/f:pull"); err != nil {
		t.Fatal(err)
	}
	path := "/v2/library/f/blobs/" + ld.String()

	t.Run("status", func(t *testing.T) {
		r.Fault(ld, Fault{Status: http.StatusTooManyRequests, RetryAfter: 3 * time.Second, Times: 1})
		resp, body := c.do(http.MethodGet, path)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || !bytes.Contains(body, []byte("TOOMANYREQUESTS")) {
			t.Errorf("429 fault: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if resp, body := c.do(http.MethodGet, path); resp.StatusCode != 200 || !bytes.Equal(body, layer) {
			t.Errorf("after Times=1: %d", resp.StatusCode)
		}
		r.Fault(ld, Fault{Status: 500})
		for range 2 {
			if resp, _ := c.do(http.MethodGet, path); resp.StatusCode != 500 {
				t.Errorf("500 fault: %d", resp.StatusCode)
			}
		}
		r.Fault(ld, Fault{})
	})
	t.Run("corrupt", func(t *testing.T) {
		r.Fault(ld, Fault{Corrupt: true, Times: 1})
		resp, body := c.do(http.MethodGet, path)
		if resp.StatusCode != 200 || len(body) != len(layer) || digest.FromBytes(body) == ld {
			t.Errorf("corrupt: %d, %d bytes (want %d, different)", resp.StatusCode, len(body), len(layer))
		}
	})
	t.Run("truncate", func(t *testing.T) {
		r.Fault(ld, Fault{Truncate: true, Times: 1})
		req, _ := http.NewRequest(http.MethodGet, r.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil || len(body) >= len(layer) || resp.ContentLength != int64(len(layer)) {
			t.Errorf("truncate: err %v, %d of %d bytes, Content-Length %d", err, len(body), len(layer), resp.ContentLength)
		}
	})
	t.Run("block", func(t *testing.T) {
		release := make(chan struct{})
		r.Fault(ld, Fault{Block: release})
		done := make(chan int, 1)
		go func() {
			resp, _ := c.do(http.MethodGet, path)
			done <- resp.StatusCode
		}()
		before := r.CDNGets(ld)
		testsync.WaitFor(t, 10*time.Second, "the request to reach the CDN", func() bool { return r.CDNGets(ld) != before })
		select {
		case code := <-done:
			t.Fatalf("blocked request finished early: %d", code)
		default:
		}
		close(release)
		select {
		case code := <-done:
			if code != 200 {
				t.Errorf("released request = %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("released request did not finish")
		}
		r.Fault(ld, Fault{})
	})
	t.Run("throttle", func(t *testing.T) {
		r.Fault(ld, Fault{BytesPerSecond: 40000, Times: 1})
		start := time.Now()
		resp, body := c.do(http.MethodGet, path)
		if el := time.Since(start); resp.StatusCode != 200 || !bytes.Equal(body, layer) || el < 100*time.Millisecond {
			t.Errorf("throttle: %d, %d bytes in %s", resp.StatusCode, len(body), el)
		}
	})
	t.Run("manifest", func(t *testing.T) {
		_, raw := r.Manifest(t, "library/f", "latest")
		md := digest.FromBytes(raw)
		r.Fault(md, Fault{Status: http.StatusInternalServerError, Times: 1})
		if resp, _ := c.do(http.MethodGet, "/v2/library/f/manifests/latest", schema2.MediaTypeManifest); resp.StatusCode != 500 {
			t.Errorf("manifest by tag with fault = %d", resp.StatusCode)
		}
		r.Fault(md, Fault{Corrupt: true, Times: 1})
		if resp, body := c.do(http.MethodGet, "/v2/library/f/manifests/"+md.String(), schema2.MediaTypeManifest); resp.StatusCode != 200 || digest.FromBytes(body) == md {
			t.Errorf("corrupt manifest = %d", resp.StatusCode)
		}
		if resp, body := c.do(http.MethodGet, "/v2/library/f/manifests/"+md.String(), schema2.MediaTypeManifest); resp.StatusCode != 200 || digest.FromBytes(body) != md {
			t.Errorf("manifest after fault = %d", resp.StatusCode)
		}
	})
	t.Run("down", func(t *testing.T) {
		r.SetDown(true)
		if resp, _ := c.do(http.MethodGet, "/v2/"); resp.StatusCode != 503 {
			t.Errorf("down: %d", resp.StatusCode)
		}
		r.SetDown(false)
		if resp, _ := c.do(http.MethodGet, "/v2/"); resp.StatusCode != 200 {
			t.Errorf("up again: %d", resp.StatusCode)
		}
	})
}

func TestPullLimit(t *testing.T) {
	r := Start(t, WithPullLimit(2))
	r.Push(t, "library/l", "1", tinyImage("l"))
	c := &client{t: t, r: r}
	if _, err := c.login("repository:library/l:pull"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 200, 429} {
		resp, _ := c.do(http.MethodGet, "/v2/library/l/manifests/1", schema2.MediaTypeManifest)
		if resp.StatusCode != want {
			t.Errorf("GET %d = %d, want %d", i, resp.StatusCode, want)
		}
	}
	if resp, _ := c.do(http.MethodHead, "/v2/library/l/manifests/1", schema2.MediaTypeManifest); resp.StatusCode != 200 {
		t.Errorf("HEAD after limit = %d, want 200 (HEADs are free)", resp.StatusCode)
	}
}

func TestIndex(t *testing.T) {
	r := Start(t)
	amd := r.Push(t, "library/multi", "", tinyImage("amd64"))
	armImg := tinyImage("arm64")
	armImg.Config.Architecture, armImg.Config.Variant = "arm64", "v8"
	arm := r.Push(t, "library/multi", "", armImg)
	idx := r.PushIndex(t, "library/multi", "latest", map[string]digest.Digest{"linux/amd64": amd, "linux/arm64/v8": arm})
	mt, raw := r.Manifest(t, "library/multi", "latest")
	if digest.FromBytes(raw) != idx || mt != "application/vnd.docker.distribution.manifest.list.v2+json" {
		t.Fatalf("index: %s %s", mt, digest.FromBytes(raw))
	}
	var ix ocispec.Index
	if err := json.Unmarshal(raw, &ix); err != nil || len(ix.Manifests) != 2 || ix.Manifests[1].Platform.Variant != "v8" {
		t.Fatalf("index = %s (%v)", raw, err)
	}

	ociImg := tinyImage("oci")
	ociImg.Format = OCI
	o := r.Push(t, "library/multi", "", ociImg)
	idx2 := r.PushIndex(t, "library/multi", "oci", map[string]digest.Digest{"linux/amd64": o})
	if mt, raw := r.Manifest(t, "library/multi", "oci"); mt != ocispec.MediaTypeImageIndex || digest.FromBytes(raw) != idx2 {
		t.Fatalf("OCI index: %s", mt)
	}
}

// TestConcurrentCounters checks the counters under concurrent clients (run
// with -race).
func TestConcurrentCounters(t *testing.T) {
	r := Start(t)
	img := tinyImage("c")
	r.Push(t, "library/c", "1", img)
	ld := digest.FromBytes(img.Layers[0])
	c := &client{t: t, r: r}
	if _, err := c.login("repository:library/c:pull"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, r.URL()+"/v2/library/c/blobs/"+ld.String(), nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if r.BlobGets(ld) != 8 || r.CDNGets(ld) != 8 || r.CDNAuthorized(ld) != 0 {
		t.Errorf("counters: %d registry, %d CDN, %d CDN with Authorization", r.BlobGets(ld), r.CDNGets(ld), r.CDNAuthorized(ld))
	}
}

// Requests lists what the registry and the CDN received, keeping only the
// scheme of an Authorization header; WithEchoingTokenErrors echoes refused
// credentials in the token endpoint's error body.
func TestRequestsAndEchoingTokenErrors(t *testing.T) {
	r := Start(t, WithCredentials("bot", "right"), WithEchoingTokenErrors())
	req, _ := http.NewRequest(http.MethodGet, r.URL()+"/token?service="+Service, nil)
	req.SetBasicAuth("bot", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "UNAUTHORIZED") ||
		!strings.Contains(string(body), "Basic ") || !strings.Contains(string(body), "wrong") {
		t.Fatalf("wrong credentials: %d %s, want 401 echoing the Authorization header and password", resp.StatusCode, body)
	}
	resp, err = http.Head(r.CDNURL() + "/cdn/library/x/" + digest.FromString("x").String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := []Request{
		{Method: http.MethodGet, Path: "/token", AuthScheme: "Basic"},
		{CDN: true, Method: http.MethodHead, Path: "/cdn/library/x/" + digest.FromString("x").String()},
	}
	if got := r.Requests(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Requests() = %+v, want %+v", got, want)
	}
}
