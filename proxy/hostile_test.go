package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/upstream"
)

// hostileUpstream serves, under tag "1" of each repository, a manifest a
// real registry would not accept: the content a compromised or broken
// upstream could send.
func hostileUpstream(t *testing.T, manifests map[string]struct{ mediaType, body string }) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		for repo, m := range manifests {
			d := digest.FromString(m.body)
			if r.URL.Path == "/v2/"+repo+"/manifests/1" || r.URL.Path == "/v2/"+repo+"/manifests/"+d.String() {
				w.Header().Set("Content-Type", m.mediaType)
				w.Header().Set("Docker-Content-Digest", d.String())
				w.Header().Set("Content-Length", fmt.Sprint(len(m.body)))
				if r.Method == http.MethodGet {
					_, _ = io.WriteString(w, m.body)
				}
				return
			}
		}
		http.NotFound(w, r)
	})
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestHostileManifestsRefusedClearly(t *testing.T) {
	const schema2 = "application/vnd.docker.distribution.manifest.v2+json"
	layer := `{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:` + strings.Repeat("a", 64) + `","size":10}`
	many := strings.Repeat(layer+",", 600)
	cases := map[string]struct {
		mediaType, body, want string
	}{
		"library/garbage":  {schema2, `{"schemaVersion":2,"config":`, "malformed image manifest"},
		"library/many":     {schema2, `{"schemaVersion":2,"mediaType":"` + schema2 + `","config":` + layer + `,"layers":[` + many[:len(many)-1] + `]}`, "600 layers, over the limit of 500"},
		"library/baddgst":  {schema2, `{"schemaVersion":2,"mediaType":"` + schema2 + `","config":{"digest":"sha256:zz","size":1},"layers":[]}`, "invalid digest"},
		"library/foreign":  {schema2, `{"schemaVersion":2,"mediaType":"` + schema2 + `","config":` + layer + `,"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:` + strings.Repeat("b", 64) + `","size":10,"urls":["https://evil.example/layer"]}]}`, "foreign layer"},
		"library/schema1":  {"application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1,"name":"x"}`, "which pullgate does not serve"},
		"library/both":     {ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"manifests":[],"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("c", 64) + `","size":2},"layers":[]}`, "both an index's manifests and an image's config"},
		"library/indexcfg": {ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("c", 64) + `","size":2}}`, "but has an image's config"},
		"library/idxurls":  {ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[{"mediaType":"` + ocispec.MediaTypeImageManifest + `","digest":"sha256:` + strings.Repeat("d", 64) + `","size":10,"urls":["http://127.0.0.1:1/m"],"platform":{"os":"linux","architecture":"amd64"}}]}`, "names urls"},
		"library/idxdata":  {ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[{"mediaType":"` + ocispec.MediaTypeImageManifest + `","digest":"sha256:` + strings.Repeat("d", 64) + `","size":2,"data":"e30="}]}`, "inline (data)"},
		"library/cfgdata":  {schema2, `{"schemaVersion":2,"mediaType":"` + schema2 + `","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:` + strings.Repeat("c", 64) + `","size":2,"data":"e30="},"layers":[]}`, "inline (data)"},
		"library/negative": {schema2, `{"schemaVersion":2,"mediaType":"` + schema2 + `","config":{"digest":"sha256:` + strings.Repeat("c", 64) + `","size":-5},"layers":[]}`, "negative size"},
	}
	manifests := map[string]struct{ mediaType, body string }{}
	for repo, c := range cases {
		manifests[repo] = struct{ mediaType, body string }{c.mediaType, c.body}
	}
	url := hostileUpstream(t, manifests)

	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	f := serverOver(t, up)

	for repo, c := range cases {
		t.Run(repo, func(t *testing.T) {
			resp, body := f.do(t, "GET", "/v2/"+repo+"/manifests/1")
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if _, msg := ociError(t, body); !strings.Contains(msg, c.want) {
				t.Fatalf("message %q lacks %q", msg, c.want)
			}
		})
	}
}
