package proxy

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// Anyone can publish a manifest that names another image's layer as its
// config and its config as a layer. Those scans end in errors (a layer is
// no JSON), which must not refuse the other image's blobs to everyone.
func TestRolesNamedByAnotherManifestDoNotPoisonBlobs(t *testing.T) {
	f := newFixture(t)
	_, config, layer := pushRoleSwap(t, f)

	for _, order := range []string{"poison first", "victim first"} {
		t.Run(order, func(t *testing.T) {
			paths := []string{"/v2/someone/poison/manifests/x", "/v2/library/victim/manifests/1"}
			if order == "victim first" {
				paths[0], paths[1] = paths[1], paths[0]
			}
			for _, p := range paths {
				f.do(t, "GET", p)
			}
			if resp, body := f.do(t, "GET", "/v2/someone/poison/manifests/x"); resp.StatusCode < 400 {
				t.Fatalf("the swapped manifest was served: %d %s", resp.StatusCode, body)
			}
			if resp, body := f.do(t, "GET", "/v2/library/victim/manifests/1"); resp.StatusCode != http.StatusOK {
				t.Fatalf("victim manifest: %d %s", resp.StatusCode, body)
			}
			for _, d := range []string{config.String(), layer.String()} {
				if resp, body := f.do(t, "GET", "/v2/library/victim/blobs/"+d); resp.StatusCode != http.StatusOK {
					t.Fatalf("victim blob %s: %d %s", d, resp.StatusCode, body)
				}
			}
		})
	}
}

// pushRoleSwap pushes a clean image as library/victim:1 and, as
// someone/poison:x, a manifest that names the victim's layer as its config
// and its config as a layer. It returns the victim's manifest, config and
// layer digests.
func pushRoleSwap(t *testing.T, f *fixture) (victim, config, layer digest.Digest) {
	t.Helper()
	img := testregistry.CleanImage("victim")
	b, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	victim = f.hub.Push(t, "library/victim", "1", img)
	l := b.Layers[0]
	for _, data := range img.Layers {
		f.hub.PushBlob(t, "someone/poison", data)
	}
	f.hub.PushBlob(t, "someone/poison", b.Config)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: l.Digest, Size: l.Size},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: b.ConfigDigest,
			Size: int64(len(b.Config))}},
	}
	m.SchemaVersion = 2
	swapped, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	f.hub.PushManifest(t, "someone/poison", "x", ocispec.MediaTypeImageManifest, swapped)
	return victim, b.ConfigDigest, l.Digest
}
