package testregistry

import (
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Request is one request the registry or its CDN received.
type Request struct {
	CDN    bool // at the CDN rather than at the registry (or its token endpoint)
	Method string
	Path   string
	// AuthScheme is the scheme of the Authorization header ("Bearer",
	// "Basic"), "" without one. The credentials themselves are not kept.
	AuthScheme string
}

func (r *Registry) record(req *http.Request, cdn bool) {
	scheme, _, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, Request{CDN: cdn, Method: req.Method, Path: req.URL.Path, AuthScheme: scheme})
}

// Requests returns every request received so far, in order. Push and the
// other helpers write to storage directly and add none.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// BlobGets is the number of GET /v2/<name>/blobs/<dgst> at the registry.
func (r *Registry) BlobGets(dgst digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[dgst]
}

// CDNGets is the number of GETs of dgst at the CDN.
func (r *Registry) CDNGets(dgst digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cdnGets[dgst]
}

// CDNAuthorized is the number of CDN GETs of dgst that carried an
// Authorization header (a client leaking its registry token to the CDN).
func (r *Registry) CDNAuthorized(dgst digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cdnAuth[dgst]
}

// ManifestGets is the number of GET /v2/<repo>/manifests/<ref>, with or
// without a token; ref is a tag or a digest exactly as requested. Only GETs
// with a token count against the pull limit.
func (r *Registry) ManifestGets(repo, ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifestGets[repo+"|"+ref]
}

// ManifestHeads is the number of HEAD /v2/<repo>/manifests/<ref>.
func (r *Registry) ManifestHeads(repo, ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifestHeads[repo+"|"+ref]
}

// TokenRequests returns the requests made to the token endpoint so far.
func (r *Registry) TokenRequests() []TokenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]TokenRequest(nil), r.tokenRequests...)
}
