package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/testregistry"
)

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
