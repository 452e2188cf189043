package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/upstream"
)

const internalSecret = "internal-secret-51d0"

// internalService stands for a service on pullgate's own host (Redis, an
// admin port) and counts the connections it accepts.
func internalService(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var accepted atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, internalSecret)
	}))
	ts.Listener = countAccepts{ts.Listener, &accepted}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, &accepted
}

type countAccepts struct {
	net.Listener
	n *atomic.Int32
}

func (l countAccepts) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// gateOver runs pullgate in front of an upstream that answers with h.
func gateOver(t *testing.T, h http.HandlerFunc) *fixture {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		h(w, r)
	}))
	t.Cleanup(ts.Close)
	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: ts.URL, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return serverOver(t, up)
}

// An anonymous client never reads what an upstream, or a service it
// redirects to, says: not an error body, not the internal service's
// answer (it is never even connected to), not the address.
func TestClientNeverSeesUpstreamText(t *testing.T) {
	svc, accepted := internalService(t)
	_, port, _ := net.SplitHostPort(svc.Listener.Addr().String())
	body := internalSecret + " at /var/lib/registry/docker/registry/v2/blobs"

	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := digest.FromString("layer")
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":5}]}`,
		digest.FromBytes(config), len(config), layer)
	serveManifest := func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", digest.FromString(manifest).String())
		io.WriteString(w, manifest)
		return true
	}

	cases := map[string]struct {
		upstream http.HandlerFunc
		want     string
	}{
		"500 with a body": {func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, body, http.StatusInternalServerError)
		}, "upstream answered 500 Internal Server Error"},
		"OCI error whose message is a secret": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "DENIED", "message": body}}})
		}, "upstream answered 403 Forbidden"},
		"manifest redirected to an internal service": {func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, svc.URL+"/internal", http.StatusTemporaryRedirect)
		}, "non-public address"},
		"blobs redirected to an internal service by name": {func(w http.ResponseWriter, r *http.Request) {
			if !serveManifest(w, r) {
				http.Redirect(w, r, "http://localhost:"+port+"/internal", http.StatusTemporaryRedirect)
			}
		}, "non-public address"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := gateOver(t, c.upstream)
			resp, got := f.do(t, "GET", "/v2/library/x/manifests/1")
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
			_, msg := ociError(t, got)
			for _, leak := range []string{internalSecret, "/var/lib", port, "127.0.0.1", "localhost"} {
				if strings.Contains(string(got), leak) {
					t.Errorf("client read %q in %s", leak, got)
				}
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("message %q lacks %q", msg, c.want)
			}
			if n := accepted.Load(); n != 0 {
				t.Fatalf("the internal service accepted %d connections", n)
			}
		})
	}
}

// 503 and 500 messages never show where pullgate keeps its files, whether
// the error came through upstreamError, asAPIError or errUnavailable;
// refusals keep the paths inside the image they quote.
func TestClientMessagesCarryNoServerPaths(t *testing.T) {
	storeErr := errors.New("open /var/lib/pullgate/blobs/sha256/ab/abcd: permission denied")
	cases := []struct {
		err        error
		want, gone string
	}{
		{upstreamError("pullgate: docker.io/library/x:1", fmt.Errorf("store sha256:ab: %v", storeErr)), "store sha256:ab: open [path]: permission denied", "/var/lib"},
		{fmt.Errorf("wrapped: %w", storeErr), "pullgate: wrapped: open [path]", "/var/lib"},
		{errUnavailable("pullgate: open blob sha256:ab: " + storeErr.Error()), "open [path]", "/var/lib"},
		{errDenied("pullgate: docker.io/library/x:1 refused: miner at /usr/bin/xmrig"), "/usr/bin/xmrig", "[path]"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		writeError(rec, httptest.NewRequest(http.MethodGet, "/v2/x/manifests/1", nil), c.err)
		_, msg := ociError(t, rec.Body.Bytes())
		if !strings.Contains(msg, c.want) || strings.Contains(msg, c.gone) {
			t.Errorf("%v: client message %q, want %q without %q", c.err, msg, c.want, c.gone)
		}
	}
}
