package upstream

import (
	"context"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// Blob opens a blob download, following redirects to other hosts (CDNs)
// without forwarding the registry's Authorization header there. It does not
// verify the digest: the caller streams the body through its verifier and
// must Close it. The size is the declared Content-Length, or -1 if unknown.
func (r *Registry) Blob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, int64, error) {
	q := request{method: http.MethodGet, repo: repo, kind: "blob", ref: dgst.String(), path: "blobs/" + dgst.String()}
	if err := dgst.Validate(); err != nil {
		return nil, 0, r.errorFor(q, 0, err)
	}
	resp, err := r.send(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, r.errorFor(q, resp.StatusCode, errUnexpectedStatus)
	}
	return resp.Body, resp.ContentLength, nil
}
