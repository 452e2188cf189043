package proxy

import (
	"encoding/json"
	"net/http"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// Anyone can publish a manifest that names another image's layer as its
// config and its config as a layer. Those scans end in errors (a layer is
// no JSON), which must not refuse the other image's blobs to everyone.
func TestRolesNamedByAnotherManifestDoNotPoisonBlobs(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("victim")
	b, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	f.hub.Push(t, "library/victim", "1", img)

	// The attacker's manifest swaps the roles of the victim's blobs.
	layer := b.Layers[0]
	for _, l := range img.Layers {
		f.hub.PushBlob(t, "someone/poison", l)
	}
	f.hub.PushBlob(t, "someone/poison", b.Config)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: layer.Digest, Size: layer.Size},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: b.ConfigDigest,
			Size: int64(len(b.Config))}},
	}
	m.SchemaVersion = 2
	swapped, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	f.hub.PushManifest(t, "someone/poison", "x", ocispec.MediaTypeImageManifest, swapped)

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
			for _, d := range []string{b.ConfigDigest.String(), layer.Digest.String()} {
				if resp, body := f.do(t, "GET", "/v2/library/victim/blobs/"+d); resp.StatusCode != http.StatusOK {
					t.Fatalf("victim blob %s: %d %s", d, resp.StatusCode, body)
				}
			}
		})
	}
}
