package proxy

import (
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
)

// blobRef is a blob the gate must decide on, in the context it is read in.
type blobRef = gate.Ref

// The operator's side reads stored image manifests with these.
const (
	mediaTypeOCIManifest    = gate.MediaTypeOCIManifest
	mediaTypeDockerManifest = gate.MediaTypeDockerManifest
)

// blobsOf lists the blobs of an image manifest (gate.BlobsOf).
func (s *Server) blobsOf(body []byte) ([]blobRef, error) {
	return gate.BlobsOf(body, s.opts.MaxManifestLayers)
}

// gateMetrics is what the gate observes, in the service's metrics.
type gateMetrics struct{ m *metrics }

func (g gateMetrics) VerdictCache(hit bool)          { g.m.verdictCache(hit) }
func (g gateMetrics) TagCache(hit bool)              { g.m.tagCache(hit) }
func (g gateMetrics) Scanned(v storage.Verdict)      { g.m.scanned(v) }
func (g gateMetrics) UpstreamBlob(registry string)   { g.m.upstreamBlob(registry) }
func (g gateMetrics) Evicted(blobs int, bytes int64) { g.m.evicted(blobs, bytes) }
