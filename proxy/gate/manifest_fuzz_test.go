package gate

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/manifest/schema2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/storage"
)

// FuzzBlobsOf feeds the gate's manifest parser arbitrary bytes: it never
// panics, and whatever it accepts is a list the gate can act on safely:
// the config first and in config context, every digest valid, no size
// negative, no foreign URL, each layer in the context its media type says.
func FuzzBlobsOf(f *testing.F) {
	d := "sha256:" + strings.Repeat("a", 64)
	e := "sha256:" + strings.Repeat("b", 64)
	seeds := []string{
		`{"schemaVersion":2,"mediaType":"` + schema2.MediaTypeManifest + `","config":{"mediaType":"` + schema2.MediaTypeImageConfig + `","digest":"` + d + `","size":10},"layers":[{"mediaType":"` + schema2.MediaTypeLayer + `","digest":"` + e + `","size":20}]}`,
		`{"schemaVersion":2,"config":{"digest":"` + d + `","size":1},"layers":[{"mediaType":"` + ocispec.MediaTypeImageLayerZstd + `","digest":"` + d + `","size":1}]}`,
		`{"config":{"digest":"` + d + `"},"layers":[{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"` + e + `","size":3}]}`,
		`{"config":{"digest":"` + d + `"},"layers":[{"digest":"` + e + `","size":-1}]}`,
		`{"config":{"digest":"` + d + `"},"layers":[{"digest":"` + e + `","urls":["https://example.invalid/x"]}]}`,
		`{"config":{"digest":"sha256:zz"},"layers":[]}`,
		`{"config":{"digest":"` + d + `"},"layers":null}`,
		`{"schemaVersion":2,"config":`,
		`[]`,
		``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	const maxLayers = 8
	f.Fuzz(func(t *testing.T, body []byte) {
		refs, err := BlobsOf(body, maxLayers)
		if err != nil {
			return
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("BlobsOf accepted what does not parse: %v", err)
		}
		if len(refs) != 1+len(m.Layers) || len(m.Layers) > maxLayers {
			t.Fatalf("%d refs for %d layers (limit %d)", len(refs), len(m.Layers), maxLayers)
		}
		for i, ref := range refs {
			if err := ref.Digest.Validate(); err != nil {
				t.Fatalf("ref %d: invalid digest %q accepted", i, ref.Digest)
			}
			if ref.Size < 0 {
				t.Fatalf("ref %d: negative size accepted", i)
			}
			want := storage.ContextConfig
			if i > 0 {
				want = LayerContext(m.Layers[i-1].MediaType)
				if len(m.Layers[i-1].URLs) > 0 {
					t.Fatalf("layer %d: foreign URLs accepted", i-1)
				}
			}
			if ref.Context != want || !ref.Context.Valid() {
				t.Fatalf("ref %d: context %q, want %q", i, ref.Context, want)
			}
		}
	})
}
