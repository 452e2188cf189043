package gate

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Ref is a blob the gate must decide on, in the context it is read in.
type Ref struct {
	Digest  digest.Digest
	Size    int64           // from the manifest; -1 when unknown (a bare blob request)
	Context storage.Context // how it is scanned: as a layer, a config, or raw
	Prio    scanner.Priority
	// Spool asks its ingest to spool the upstream bytes for clients to be
	// streamed from while it is scanned (stream mode).
	Spool bool
}

// Noun is what the blob is to a person: layer, config, artifact.
func (r Ref) Noun() string {
	if r.Context == "" {
		return "blob" // a verdict stored before contexts existed
	}
	return string(r.Context)
}

// IsConfig reports whether the blob is read as an image config.
func (r Ref) IsConfig() bool { return r.Context == storage.ContextConfig }

// ImageBlobs lists the blobs of d, config first, when d is an image
// manifest in the store (false otherwise): the operator's window reads an
// image's verdicts and allows its blobs with it.
func (g *Gate) ImageBlobs(ctx context.Context, d digest.Digest) ([]Ref, bool) {
	body, mt, err := g.opts.Blobs.Manifest(ctx, d)
	if err != nil || !IsImageManifest(mt) {
		return nil, false
	}
	refs, err := BlobsOf(body, g.opts.MaxManifestLayers)
	if err != nil {
		return nil, false
	}
	return refs, true
}
