package upstream

import (
	"context"
	_ "crypto/sha256" // digest algorithms used by registries
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// Manifest media types asked for when the caller passes no accept list.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
)

// DefaultAccept is the manifest Accept list used when none is given.
var DefaultAccept = []string{MediaTypeOCIIndex, MediaTypeDockerManifestList, MediaTypeOCIManifest, MediaTypeDockerManifest}

// Descriptor identifies a manifest upstream. Size is -1 if upstream did not
// say.
type Descriptor struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
}

// Resolve maps a tag (or digest) to a manifest descriptor with a HEAD, which
// Docker Hub does not count against pull limits. Only when upstream omits
// Docker-Content-Digest, or does not allow HEAD, does it GET the manifest and
// compute the digest. accept: the manifest media types to ask for.
func (r *Registry) Resolve(ctx context.Context, repo, tag string, accept []string) (Descriptor, error) {
	q := manifestRequest(http.MethodHead, repo, tag, accept)
	ref := registry.Reference{Registry: r.base.Host, Repository: repo, Reference: tag}
	if err := ref.ValidateReference(); err != nil {
		return Descriptor{}, r.errorFor(q, 0, fmt.Errorf("%w: %w", errInvalidReference, err))
	}
	resp, err := r.send(ctx, q)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || (e.StatusCode != http.StatusMethodNotAllowed && e.StatusCode != http.StatusNotImplemented) {
			return Descriptor{}, err
		}
	} else {
		resp.Body.Close()
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			d, err := digest.Parse(h)
			if err != nil {
				return Descriptor{}, r.errorFor(q, 0, fmt.Errorf("bad Docker-Content-Digest %q: %w", h, err))
			}
			if want, err := digest.Parse(tag); err == nil && want != d {
				return Descriptor{}, r.errorFor(q, 0, fmt.Errorf("%w: asked for %s, upstream says %s", ErrDigestMismatch, want, d))
			}
			return Descriptor{MediaType: mediaType(resp.Header.Get("Content-Type"), nil), Digest: d, Size: resp.ContentLength}, nil
		}
	}

	q.method = http.MethodGet
	body, resp, err := r.fetchManifest(ctx, q)
	if err != nil {
		return Descriptor{}, err
	}
	desc := Descriptor{MediaType: mediaType(resp.Header.Get("Content-Type"), body), Size: int64(len(body))}
	want, err := digest.Parse(tag)
	if err != nil {
		// A tag: the digest is what the bytes hash to, in the algorithm
		// upstream names if it names one.
		want = digest.Canonical.FromBytes(body)
		if h, perr := digest.Parse(resp.Header.Get("Docker-Content-Digest")); perr == nil {
			want = h
		}
	}
	if err := verify(want, body); err != nil {
		return Descriptor{}, r.errorFor(q, 0, err)
	}
	desc.Digest = want
	return desc, nil
}

// Manifest fetches a manifest by digest, refuses more than MaxManifestSize
// bytes, and verifies the bytes against dgst before returning them.
func (r *Registry) Manifest(ctx context.Context, repo string, dgst digest.Digest, accept []string) ([]byte, Descriptor, error) {
	q := manifestRequest(http.MethodGet, repo, dgst.String(), accept)
	if err := dgst.Validate(); err != nil {
		return nil, Descriptor{}, r.errorFor(q, 0, err)
	}
	body, resp, err := r.fetchManifest(ctx, q)
	if err != nil {
		return nil, Descriptor{}, err
	}
	if err := verify(dgst, body); err != nil {
		return nil, Descriptor{}, r.errorFor(q, 0, err)
	}
	return body, Descriptor{MediaType: mediaType(resp.Header.Get("Content-Type"), body), Digest: dgst, Size: int64(len(body))}, nil
}

func manifestRequest(method, repo, ref string, accept []string) request {
	if len(accept) == 0 {
		accept = DefaultAccept
	}
	return request{method: method, repo: repo, kind: "manifest", ref: ref, path: "manifests/" + ref, accept: accept}
}

// fetchManifest GETs a manifest body, capped at MaxManifestSize.
func (r *Registry) fetchManifest(ctx context.Context, q request) ([]byte, *http.Response, error) {
	resp, err := r.send(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := readCapped(resp, MaxManifestSize)
	if err != nil {
		return nil, nil, r.errorFor(q, 0, err)
	}
	return body, resp, nil
}

// readCapped reads a whole body, failing with ErrTooLarge past max bytes.
func readCapped(resp *http.Response, max int64) ([]byte, error) {
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrTooLarge, resp.ContentLength, max)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return body, nil
}

func verify(want digest.Digest, body []byte) error {
	if !want.Algorithm().Available() {
		return fmt.Errorf("unsupported digest algorithm %q", want.Algorithm())
	}
	if got := want.Algorithm().FromBytes(body); got != want {
		return fmt.Errorf("%w: asked for %s, got %s", ErrDigestMismatch, want, got)
	}
	return nil
}

// mediaType takes the media type from Content-Type, or else from the
// manifest's own mediaType field.
func mediaType(contentType string, body []byte) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "text/plain" && mt != "application/octet-stream" {
		return mt
	}
	var m struct {
		MediaType string `json:"mediaType"`
	}
	if body != nil && json.Unmarshal(body, &m) == nil && m.MediaType != "" {
		return m.MediaType
	}
	if contentType != "" {
		mt, _, _ := mime.ParseMediaType(contentType)
		return mt
	}
	return ""
}
