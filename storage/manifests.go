package storage

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	distst "github.com/distribution/distribution/v3/registry/storage"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage/internal/dcheck"
)

// Manifests are stored as blobs, byte for byte, linked under their own
// internal repository; the media type a registry served them with goes in a
// sidecar file beside them, since the bytes alone do not always say it.

// PutManifest stores body under dgst with its media type. It refuses a body
// that does not hash to dgst.
func (b *Blobs) PutManifest(ctx context.Context, dgst digest.Digest, mediaType string, body []byte) error {
	if err := dcheck.Validate(dgst); err != nil {
		return fmt.Errorf("put manifest %q: %w: %w", dgst, ErrInvalid, err)
	}
	if mediaType == "" || strings.ContainsAny(mediaType, "\r\n") {
		return fmt.Errorf("put manifest %s: %w: media type %q", dgst, ErrInvalid, mediaType)
	}
	if got := dgst.Algorithm().FromBytes(body); got != dgst {
		return fmt.Errorf("put manifest %s: %w: body hashes to %s", dgst, ErrDigestMismatch, got)
	}

	// The media type goes first: a reader finds the manifest only through
	// the link Commit writes, and by then the sidecar is in place.
	if err := b.driver.PutContent(ctx, mediaTypePath(dgst), []byte(mediaType)); err != nil {
		return fmt.Errorf("put manifest %s media type: %w", dgst, err)
	}
	w, err := b.create(ctx, b.manifests, manifestRepoName, nil)
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", dgst, err)
	}
	defer w.Cancel(ctx)
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("put manifest %s: %w", dgst, err)
	}
	if err := w.Commit(ctx, dgst, int64(len(body))); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	b.manifestsHere.committed(dgst, present{size: int64(len(body)), mediaType: mediaType})
	return nil
}

// Manifest returns the exact bytes stored under dgst and their media type,
// or an error wrapping ErrNotFound. Stored bytes that do not hash to dgst
// are removed, and the error wraps both ErrDigestMismatch and ErrNotFound.
func (b *Blobs) Manifest(ctx context.Context, dgst digest.Digest) ([]byte, string, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return nil, "", fmt.Errorf("get manifest %q: %w: %w", dgst, ErrInvalid, err)
	}
	known, ok := b.manifestsHere.get(dgst)
	gen := b.manifestsHere.generation()
	if !ok {
		if _, err := b.manifests.Stat(ctx, dgst); err != nil {
			return nil, "", fmt.Errorf("get manifest %s: %w", dgst, notFound(err))
		}
	}
	// The bytes themselves, read and checked every time: only the
	// question "is it linked here" is remembered.
	body, err := b.driver.GetContent(ctx, blobDataPath(dgst))
	if err != nil {
		return nil, "", fmt.Errorf("get manifest %s: %w", dgst, b.gone(b.manifestsHere, dgst, err))
	}
	// Manifests are small; checking them on every read catches a corrupted
	// backend before a client caches what it got. A manifest that does not
	// match is removed and reported absent as well, so the caller fetches
	// it again rather than failing on it until someone cleans up.
	if got := dgst.Algorithm().FromBytes(body); got != dgst {
		err := fmt.Errorf("get manifest %s: stored bytes hash to %s: %w", dgst, got, ErrDigestMismatch)
		if rmErr := b.DeleteManifest(ctx, dgst); rmErr != nil && !errors.Is(rmErr, ErrNotFound) {
			return nil, "", errors.Join(err, fmt.Errorf("remove corrupt manifest: %w", rmErr))
		}
		return nil, "", fmt.Errorf("%w (removed): %w", err, ErrNotFound)
	}
	if ok {
		return body, known.mediaType, nil
	}
	mt, err := b.driver.GetContent(ctx, mediaTypePath(dgst))
	if err != nil {
		return nil, "", fmt.Errorf("get manifest %s media type: %w", dgst, notFound(err))
	}
	b.manifestsHere.found(dgst, present{size: int64(len(body)), mediaType: string(mt)}, gen)
	return body, string(mt), nil
}

// IsManifest reports whether dgst is stored as a manifest: one look at the
// media type recorded beside it, without reading or verifying the bytes,
// so it is cheap enough for every blob request.
func (b *Blobs) IsManifest(ctx context.Context, dgst digest.Digest) (bool, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return false, fmt.Errorf("stat manifest %q: %w: %w", dgst, ErrInvalid, err)
	}
	if _, ok := b.manifestsHere.get(dgst); ok {
		return true, nil
	}
	if _, err := b.driver.Stat(ctx, mediaTypePath(dgst)); err != nil {
		if isPathNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("stat manifest %s: %w", dgst, err)
	}
	return true, nil
}

// DeleteManifest removes a stored manifest and its media type.
func (b *Blobs) DeleteManifest(ctx context.Context, dgst digest.Digest) error {
	if err := dcheck.Validate(dgst); err != nil {
		return fmt.Errorf("delete manifest %q: %w: %w", dgst, ErrInvalid, err)
	}
	b.manifestsHere.forget(dgst)
	defer b.manifestsHere.forget(dgst)
	if err := b.manifests.Delete(ctx, dgst); err != nil {
		return fmt.Errorf("delete manifest %s: %w", dgst, notFound(err))
	}
	if err := b.driver.Delete(ctx, path.Dir(mediaTypePath(dgst))); err != nil && !isPathNotFound(err) {
		return fmt.Errorf("delete manifest %s media type: %w", dgst, err)
	}
	if err := distst.NewVacuum(ctx, b.driver).RemoveBlob(dgst.String()); err != nil && !isPathNotFound(err) {
		return fmt.Errorf("delete manifest %s data: %w", dgst, err)
	}
	return nil
}

func mediaTypePath(dgst digest.Digest) string {
	return path.Join(pullgateRoot, "manifests", dgst.Algorithm().String(), dgst.Encoded(), "mediatype")
}
