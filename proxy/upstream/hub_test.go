package upstream

import (
	"net/netip"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// pushed is what pushImage stored: an OCI image of one layer.
type pushed struct {
	manifest []byte
	desc     Descriptor
	layer    Descriptor
}

// pushImage stores an OCI image whose one layer is layer (any bytes) in
// repo:tag of hub.
func pushImage(t *testing.T, hub *testregistry.Registry, repo, tag string, layer []byte) pushed {
	t.Helper()
	img := testregistry.Image{Layers: [][]byte{layer}, Format: testregistry.OCI, LayerMediaType: ocispec.MediaTypeImageLayer}
	dgst := hub.Push(t, repo, tag, img)
	mediaType, raw := hub.Manifest(t, repo, dgst.String())
	return pushed{
		manifest: raw,
		desc:     Descriptor{MediaType: mediaType, Digest: dgst, Size: int64(len(raw))},
		layer:    Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))},
	}
}

// hubClient is a Registry client for hub, as docker.io, with credentials
// (empty for anonymous pulls). The token endpoint is on the registry's
// port and the CDN on another loopback address, as auth.docker.io and the
// CDN are other hosts than registry-1.docker.io.
func hubClient(t *testing.T, hub *testregistry.Registry, user, password string) *Registry {
	t.Helper()
	r, err := New(Config{Name: "docker.io", URL: hub.URL(), Username: user, Password: password, UserAgent: "pullgate-test",
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
