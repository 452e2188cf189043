package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy/admin/admintest"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
)

// In gateway mode clients reach pullgate under each registry's own name, and
// nothing in the path says which registry they meant: the Host does. Two
// registries carry the same repository and tag with different content; a
// request under each registry's name gets that registry's image, and a Host
// that names no configured registry is refused before anything is fetched.
func TestGatewayHostChoosesTheUpstream(t *testing.T) {
	ghcr := testregistry.Start(t)
	ghcrUp, err := upstream.New(upstream.Config{Name: "ghcr.io", URL: ghcr.URL(),
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.Upstreams["ghcr.io"] = ghcrUp })

	hubImg, ghcrImg := testregistry.CleanImage("from docker hub"), testregistry.CleanImage("from ghcr")
	want := map[string]struct {
		manifest digest.Digest
		layer    []byte
	}{
		"registry-1.docker.io": {f.hub.Push(t, "acme/app", "1", hubImg), hubImg.Layers[0]},
		"ghcr.io":              {ghcr.Push(t, "acme/app", "1", ghcrImg), ghcrImg.Layers[0]},
	}
	if want["ghcr.io"].manifest == want["registry-1.docker.io"].manifest {
		t.Fatal("the two registries hold the same image, so this test proves nothing")
	}

	gw := httptest.NewTLSServer(f.srv.GatewayHandler())
	defer gw.Close()
	get := func(host, path string) (*http.Response, []byte) {
		t.Helper()
		return admintest.Request(t, gw.Client(), gw.URL, http.MethodGet, path, "", nil, "Host", host)
	}

	for host, w := range want {
		resp, body := get(host+":443", "/v2/acme/app/manifests/1")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Host %s: manifest %d %s", host, resp.StatusCode, body)
		}
		if got := digest.FromBytes(body); got != w.manifest {
			t.Errorf("Host %s: served manifest %s, want %s, the one in %s", host, got, w.manifest, host)
		}
		layer := digest.FromBytes(w.layer)
		resp, body = get(host, "/v2/acme/app/blobs/"+layer.String())
		if resp.StatusCode != http.StatusOK || digest.FromBytes(body) != layer {
			t.Errorf("Host %s: layer %s: %d, %d bytes", host, layer, resp.StatusCode, len(body))
		}
	}

	// Any manifest request, by tag or digest, to either registry.
	upstreamAsked := func() (n int) {
		for _, reg := range []*testregistry.Registry{f.hub, ghcr} {
			for _, ref := range []string{"1", want["registry-1.docker.io"].manifest.String(), want["ghcr.io"].manifest.String()} {
				n += reg.ManifestGets("acme/app", ref) + reg.ManifestHeads("acme/app", ref)
			}
		}
		return n
	}
	before := upstreamAsked()
	resp, body := get("quay.io", "/v2/acme/app/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("Host quay.io (not configured): %d %s, want 403", resp.StatusCode, body)
	} else if code, _ := ociError(t, body); code != "DENIED" {
		t.Errorf("Host quay.io (not configured): code %s, want DENIED", code)
	}
	if after := upstreamAsked(); after != before {
		t.Errorf("a request under an unconfigured Host reached an upstream (%d manifest GETs, was %d)", after, before)
	}
}
