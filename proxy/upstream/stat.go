package upstream

import (
	"context"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// StatBlob asks upstream with a HEAD whether repo carries the blob dgst,
// without downloading it. A blob that is not there is an *Error for which
// IsNotFound holds; the size is the declared Content-Length, or -1.
func (r *Registry) StatBlob(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	q := request{method: http.MethodHead, repo: repo, kind: "blob", ref: dgst.String(), path: "blobs/" + dgst.String()}
	if err := dgst.Validate(); err != nil {
		return 0, r.errorFor(q, 0, err)
	}
	resp, err := r.send(ctx, q)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}
