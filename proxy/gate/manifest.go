package gate

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containerd/platforms"
	"github.com/distribution/distribution/v3/manifest/manifestlist"
	"github.com/distribution/distribution/v3/manifest/schema2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/storage"
)

// The manifest media types pullgate serves, from the OCI image spec and
// distribution's manifest packages.
const (
	MediaTypeDockerManifest = schema2.MediaTypeManifest
	MediaTypeDockerList     = manifestlist.MediaTypeManifestList
	MediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
	// mediaTypeSchema1 is refused by name; distribution v3 no longer has
	// a package for it.
	mediaTypeSchema1 = "application/vnd.docker.distribution.manifest.v1+json"
)

// ManifestTypes lists the manifest media types pullgate asks upstream for
// and serves: indexes first.
var ManifestTypes = []string{MediaTypeOCIIndex, MediaTypeDockerList, MediaTypeOCIManifest, MediaTypeDockerManifest}

// IsIndex reports whether a media type is an index (a manifest list).
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerList
}

// IsImageManifest reports whether a media type is an image manifest.
func IsImageManifest(mediaType string) bool {
	return mediaType == MediaTypeOCIManifest || mediaType == MediaTypeDockerManifest
}

// ParseIndex reads an OCI index or a Docker manifest list.
func ParseIndex(body []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return idx, fmt.Errorf("malformed index: %v", err)
	}
	return idx, nil
}

// layerTypes are the media types of tar layers, walked file by file. A
// layer of any other type (an OCI artifact: a chart, a signature, an SBOM)
// is scanned as raw bytes.
var layerTypes = map[string]bool{
	schema2.MediaTypeLayer:             true,
	schema2.MediaTypeUncompressedLayer: true,
	schema2.MediaTypeForeignLayer:      true, // refused by BlobsOf when it has URLs
	ocispec.MediaTypeImageLayer:        true,
	ocispec.MediaTypeImageLayerGzip:    true,
	ocispec.MediaTypeImageLayerZstd:    true,
	//lint:ignore SA1019 deprecated for new images, still found in old ones
	ocispec.MediaTypeImageLayerNonDistributable: true,
	//lint:ignore SA1019 as above
	ocispec.MediaTypeImageLayerNonDistributableGzip: true,
	//lint:ignore SA1019 as above
	ocispec.MediaTypeImageLayerNonDistributableZstd: true,
}

// LayerContext is how a layer of the given media type is scanned.
func LayerContext(mediaType string) storage.Context {
	if layerTypes[mediaType] {
		return storage.ContextLayer
	}
	return storage.ContextArtifact
}

// BlobsOf lists the blobs an image manifest needs, config first, each in
// the context it is read in: the config as a config, each layer as a tar
// layer or, when its media type is not one, as an artifact. A digest the
// manifest lists in two roles is listed twice and judged in both. A
// manifest over maxLayers layers, or naming a blob pullgate would not
// fetch itself (urls) or that reaches a client without a blob request
// (inline data), is refused with the reason.
func BlobsOf(body []byte, maxLayers int) ([]Ref, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("malformed image manifest: %v", err)
	}
	if len(m.Layers) > maxLayers {
		return nil, fmt.Errorf("%d layers, over the limit of %d", len(m.Layers), maxLayers)
	}
	refs := make([]Ref, 0, 1+len(m.Layers))
	for i, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("blob %d: invalid digest %q", i, cut(string(d.Digest), 80))
		}
		if d.Size < 0 {
			return nil, fmt.Errorf("blob %s: negative size", d.Digest)
		}
		if len(d.URLs) > 0 {
			// A foreign layer lives outside the registry; fetching it from
			// wherever it says would make pullgate an open proxy.
			return nil, fmt.Errorf("layer %s is a foreign layer (urls), which pullgate does not fetch", d.Digest)
		}
		if len(d.Data) > 0 {
			return nil, fmt.Errorf("blob %s carries its content inline (data), which pullgate does not serve", d.Digest)
		}
		c := storage.ContextConfig
		if i > 0 {
			c = LayerContext(d.MediaType)
		}
		refs = append(refs, Ref{Digest: d.Digest, Size: d.Size, Context: c})
	}
	return refs, nil
}

// ManifestKind says what a manifest is from its own bytes: the media type
// it declares, or (OCI allows it to be absent) its shape. A document whose
// fields say both index and image manifest is refused: clients that read it
// as one or the other would see different things, and an index is served
// without the gate (containerd and the OCI spec refuse such documents since
// the ambiguity was found in 2021). What the upstream's Content-Type or the
// store's record says is checked against this, never trusted instead.
func ManifestKind(body []byte) (string, error) {
	// Raw fields: only whether each is present counts.
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
		Layers    json.RawMessage `json:"layers"`
		FSLayers  json.RawMessage `json:"fsLayers"`
		Schema    int             `json:"schemaVersion"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return "", fmt.Errorf("not a JSON manifest: %v", err)
	}
	index := probe.Manifests != nil
	image := probe.Config != nil || probe.Layers != nil || probe.FSLayers != nil
	if index && image {
		return "", errors.New("it has both an index's manifests and an image's config or layers")
	}
	switch {
	case IsIndex(probe.MediaType):
		if image {
			return "", fmt.Errorf("it declares %s but has an image's config or layers", probe.MediaType)
		}
		return probe.MediaType, nil
	case IsImageManifest(probe.MediaType):
		if index {
			return "", fmt.Errorf("it declares %s but has an index's manifests", probe.MediaType)
		}
		return probe.MediaType, nil
	case probe.MediaType == "":
		switch {
		case index:
			return MediaTypeOCIIndex, nil
		case probe.Config != nil:
			return MediaTypeOCIManifest, nil
		case probe.FSLayers != nil, probe.Schema == 1:
			return mediaTypeSchema1, nil // refused by name
		}
		return "", errors.New("it declares no media type and has neither manifests nor a config")
	}
	// Another declared type (schema1, an artifact manifest): refused by the
	// registry API, by name.
	return probe.MediaType, nil
}

// ParsePlatform reads "os/arch[/variant]".
func ParsePlatform(s string) (ocispec.Platform, error) {
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]: %w", s, err)
	}
	return p, nil
}

// PlatformMatches is the one platform matcher: prefetch, warm and
// `pullgate scan` pick index entries with it. Both sides are normalised as
// containerd does (aarch64 is arm64, x86_64 is amd64), and a wanted
// platform written without a variant takes any variant of its
// architecture ("linux/arm" takes v6 and v7), as a client asking for
// "linux/arm64" takes the one arm64 entry whatever its variant.
func PlatformMatches(want string, got *ocispec.Platform) bool {
	if got == nil {
		return false
	}
	w, err := platforms.Parse(want)
	if err != nil {
		return false
	}
	g := platforms.Normalize(*got)
	if w.OS != g.OS || w.Architecture != g.Architecture {
		return false
	}
	if !hasVariant(want) {
		return true
	}
	return w.Variant == g.Variant || (g.Variant == "" && w.Variant == platforms.Normalize(ocispec.Platform{OS: g.OS, Architecture: g.Architecture}).Variant)
}

// hasVariant reports whether "os/arch/variant" names a variant.
func hasVariant(s string) bool {
	n := 0
	for _, c := range s {
		if c == '/' {
			n++
		}
	}
	return n >= 2
}

// PickPlatform returns the first entry of an index for the wanted
// platform, as a client picks one; ok is false when none matches.
func PickPlatform(idx ocispec.Index, want string) (ocispec.Descriptor, bool) {
	for _, m := range idx.Manifests {
		if m.Digest.Validate() == nil && PlatformMatches(want, m.Platform) {
			return m, true
		}
	}
	return ocispec.Descriptor{}, false
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CheckIndex refuses an index whose entries a client would fetch from
// anywhere but here: containerd fetches a descriptor from its urls first
// and may take embedded data as the content, so a child manifest (and all
// it names) would reach the client past the gate.
func CheckIndex(body []byte) error {
	idx, err := ParseIndex(body)
	if err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		if len(d.URLs) > 0 {
			return fmt.Errorf("index entry %s names urls to fetch it from, which would take it past pullgate", cut(string(d.Digest), 80))
		}
		if len(d.Data) > 0 {
			return fmt.Errorf("index entry %s carries its content inline (data), which would take it past pullgate", cut(string(d.Digest), 80))
		}
	}
	return nil
}
