package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// BlobWriter receives a blob's bytes. Nothing it writes is visible until
// Commit succeeds. Calling Cancel after a successful Commit does nothing, so
// `defer w.Cancel(ctx)` right after Create is the intended use.
type BlobWriter interface {
	io.Writer
	// Commit makes the blob visible under dgst if exactly size bytes were
	// written and they hash to dgst. Otherwise it returns an error wrapping
	// ErrSizeMismatch or ErrDigestMismatch and leaves nothing behind.
	Commit(ctx context.Context, dgst digest.Digest, size int64) error
	// Cancel discards everything written.
	Cancel(ctx context.Context) error
}

// Create starts writing a new blob.
func (b *Blobs) Create(ctx context.Context) (BlobWriter, error) {
	return b.create(ctx, b.blobs, blobRepoName, b.blobsHere)
}

// create starts an upload to store; here, when not nil, learns of the
// blob once committed.
func (b *Blobs) create(ctx context.Context, store distribution.BlobStore, repo string, here *presence) (*blobWriter, error) {
	w, err := store.Create(ctx)
	if err != nil {
		return nil, fmt.Errorf("create blob upload: %w", err)
	}
	return &blobWriter{w: w, driver: b.driver, repo: repo, here: here}, nil
}

type blobWriter struct {
	mu      sync.Mutex
	w       distribution.BlobWriter
	driver  storagedriver.StorageDriver
	repo    string
	here    *presence
	written int64
	done    bool // committed, cancelled or failed: nothing more to do
}

func (bw *blobWriter) Write(p []byte) (int, error) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if bw.done {
		return 0, errors.New("write blob: writer already committed or cancelled")
	}
	n, err := bw.w.Write(p)
	bw.written += int64(n)
	if err != nil {
		return n, fmt.Errorf("write blob: %w", err)
	}
	return n, nil
}

func (bw *blobWriter) Commit(ctx context.Context, dgst digest.Digest, size int64) error {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if bw.done {
		return errors.New("commit blob: writer already committed or cancelled")
	}
	if err := dgst.Validate(); err != nil {
		return bw.fail(ctx, fmt.Errorf("commit blob %q: %w: %w", dgst, ErrInvalid, err))
	}
	// distribution's writer trusts its own byte count over the size it is
	// given, so the size is checked here.
	if size < 0 || bw.written != size {
		return bw.fail(ctx, fmt.Errorf("commit blob %s: %w: wrote %d bytes, expected %d", dgst, ErrSizeMismatch, bw.written, size))
	}
	_, err := bw.w.Commit(ctx, v1.Descriptor{Digest: dgst, Size: size})
	if err != nil {
		// The writer is closed now and its Cancel would refuse, so remove
		// the upload directory directly.
		bw.done = true
		if rmErr := bw.removeUpload(ctx); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		var invalid distribution.ErrBlobInvalidDigest
		switch {
		case errors.As(err, &invalid):
			return fmt.Errorf("commit blob %s: %w: %w", dgst, ErrDigestMismatch, err)
		case errors.Is(err, distribution.ErrBlobInvalidLength):
			return fmt.Errorf("commit blob %s: %w: %w", dgst, ErrSizeMismatch, err)
		}
		return fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	bw.done = true
	if bw.here != nil {
		bw.here.committed(dgst, present{size: size})
	}
	return nil
}

func (bw *blobWriter) Cancel(ctx context.Context) error {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if bw.done {
		return nil
	}
	bw.done = true
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := bw.w.Cancel(ctx); err != nil {
		if rmErr := bw.removeUpload(ctx); rmErr != nil {
			return fmt.Errorf("cancel blob upload: %w", errors.Join(err, rmErr))
		}
	}
	return nil
}

// fail cancels the upload and returns cause, with any cleanup error joined.
func (bw *blobWriter) fail(ctx context.Context, cause error) error {
	bw.done = true
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := bw.w.Cancel(ctx); err != nil {
		if rmErr := bw.removeUpload(ctx); rmErr != nil {
			return errors.Join(cause, fmt.Errorf("clean up upload: %w", rmErr))
		}
	}
	return cause
}

func (bw *blobWriter) removeUpload(ctx context.Context) error {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	dir := path.Join(uploadsRoot, bw.repo, "_uploads", bw.w.ID())
	if err := bw.driver.Delete(ctx, dir); err != nil && !isPathNotFound(err) {
		return fmt.Errorf("remove upload %s: %w", dir, err)
	}
	return nil
}

// cleanupContext detaches cleanup from a caller's context: a pull whose
// client went away must still leave nothing half-written behind.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}
