package proxy

import "github.com/pullgate/pullgate/proxy/gate"

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
