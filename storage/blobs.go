package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	distst "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A mirror shares layers across repositories, so every blob is linked under
// one internal repository and served by digest whatever name a client asked
// for. Manifests get their own, so a manifest digest is never Stat-able as a
// layer and the other way round.
const (
	blobRepoName     = "pullgate/blobs"
	manifestRepoName = "pullgate/manifests"

	// distribution's path layout (registry/storage/paths.go), needed to clean
	// up an upload whose Commit failed after distribution closed its file
	// writer, when its own Cancel can no longer do it.
	uploadsRoot = "/docker/registry/v2/repositories"

	// pullgate's own files live beside distribution's tree.
	pullgateRoot = "/pullgate"
	markerPath   = pullgateRoot + "/store"
	probeRoot    = pullgateRoot + "/probe"
)

// probeName names this process's write probe.
var probeName = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// Blobs is the content-addressed blob and manifest store. It is safe for
// concurrent use; several processes may share one driver (e.g. s3-aws).
type Blobs struct {
	driver    storagedriver.StorageDriver
	blobs     distribution.BlobStore
	manifests distribution.BlobStore
}

// NewBlobs returns a store over d. It writes a small marker file, so a
// driver that cannot be written to fails here rather than on the first pull.
func NewBlobs(ctx context.Context, d storagedriver.StorageDriver) (*Blobs, error) {
	ns, err := distst.NewRegistry(ctx, d, distst.EnableDelete, distst.DisableDigestResumption)
	if err != nil {
		return nil, fmt.Errorf("open blob store on %s driver: %w", d.Name(), err)
	}
	blobs, err := linkedStore(ctx, ns, blobRepoName)
	if err != nil {
		return nil, err
	}
	manifests, err := linkedStore(ctx, ns, manifestRepoName)
	if err != nil {
		return nil, err
	}
	if err := d.PutContent(ctx, markerPath, []byte("pullgate blob store\n")); err != nil {
		return nil, fmt.Errorf("open blob store on %s driver: write %s: %w", d.Name(), markerPath, err)
	}
	return &Blobs{driver: d, blobs: blobs, manifests: manifests}, nil
}

func linkedStore(ctx context.Context, ns distribution.Namespace, name string) (distribution.BlobStore, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return nil, fmt.Errorf("internal repository name %q: %w", name, err)
	}
	repo, err := ns.Repository(ctx, named)
	if err != nil {
		return nil, fmt.Errorf("open internal repository %s: %w", name, err)
	}
	return repo.Blobs(ctx), nil
}

// NewFilesystemBlobs returns a store rooted at the directory root, the
// single-node default.
func NewFilesystemBlobs(ctx context.Context, root string) (*Blobs, error) {
	if root == "" {
		return nil, fmt.Errorf("filesystem blob store: empty root directory: %w", ErrInvalid)
	}
	return NewBlobs(ctx, filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}))
}

// NewInMemoryBlobs returns a store that lives in process memory, for tests.
func NewInMemoryBlobs(ctx context.Context) (*Blobs, error) {
	return NewBlobs(ctx, inmemory.New())
}

// Driver returns the storage driver underneath, for tests and tools.
func (b *Blobs) Driver() storagedriver.StorageDriver { return b.driver }

// Stat returns the size of a committed blob, or an error wrapping
// ErrNotFound.
func (b *Blobs) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	if err := dgst.Validate(); err != nil {
		return 0, fmt.Errorf("stat blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	desc, err := b.blobs.Stat(ctx, dgst)
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", dgst, notFound(err))
	}
	return desc.Size, nil
}

// Open returns a reader over a committed blob and its size. The reader
// seeks, so it can be handed to http.ServeContent for Range requests.
func (b *Blobs) Open(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, int64, error) {
	if err := dgst.Validate(); err != nil {
		return nil, 0, fmt.Errorf("open blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	desc, err := b.blobs.Stat(ctx, dgst)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", dgst, notFound(err))
	}
	if desc.Size == 0 {
		// Some drivers (s3-aws) fail to read an empty object back; there
		// is nothing to read.
		return nopSeekCloser{bytes.NewReader(nil)}, 0, nil
	}
	rc, err := b.blobs.Open(ctx, desc.Digest)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", dgst, notFound(err))
	}
	return rc, desc.Size, nil
}

type nopSeekCloser struct{ io.ReadSeeker }

// Reader returns a plain reader over a committed blob's bytes, from the
// start, and its size. It reads the driver directly: distribution's blob
// reader (what Open returns) puts a 4 MiB buffer in front of every open
// blob, which a server streaming to hundreds of clients cannot afford. For
// the filesystem driver the reader is the open file, so it costs no buffer
// at all; the caller brings its own.
func (b *Blobs) Reader(ctx context.Context, dgst digest.Digest) (io.ReadCloser, int64, error) {
	if err := dgst.Validate(); err != nil {
		return nil, 0, fmt.Errorf("read blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	desc, err := b.blobs.Stat(ctx, dgst)
	if err != nil {
		return nil, 0, fmt.Errorf("read blob %s: %w", dgst, notFound(err))
	}
	if desc.Size == 0 {
		// Some drivers (s3-aws) fail to read an empty object back.
		return io.NopCloser(bytes.NewReader(nil)), 0, nil
	}
	rc, err := b.driver.Reader(ctx, blobDataPath(desc.Digest), 0)
	if err != nil {
		return nil, 0, fmt.Errorf("read blob %s: %w", dgst, notFound(err))
	}
	return rc, desc.Size, nil
}

func (nopSeekCloser) Close() error { return nil }

// Delete removes a blob: first its link, so it stops being served at once,
// then its data.
func (b *Blobs) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("delete blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	if err := b.blobs.Delete(ctx, dgst); err != nil {
		return fmt.Errorf("delete blob %s: %w", dgst, notFound(err))
	}
	if err := distst.NewVacuum(ctx, b.driver).RemoveBlob(dgst.String()); err != nil && !isPathNotFound(err) {
		return fmt.Errorf("delete blob %s data: %w", dgst, err)
	}
	return nil
}

// Ping reports whether the storage backend answers, for readiness.
func (b *Blobs) Ping(ctx context.Context) error {
	if _, err := b.driver.Stat(ctx, markerPath); err != nil {
		return fmt.Errorf("blob store (%s driver): %w", b.driver.Name(), err)
	}
	return nil
}

// ProbeWrite writes a small file under the store's root and removes it,
// for readiness: a store that answers reads but cannot write (a full or
// read-only disk, a bucket without write access) cannot ingest anything.
// Each process probes a file of its own, so replicas sharing a store never
// remove each other's probe.
func (b *Blobs) ProbeWrite(ctx context.Context) error {
	p := path.Join(probeRoot, probeName)
	if err := b.driver.PutContent(ctx, p, []byte("pullgate write probe\n")); err != nil {
		return fmt.Errorf("blob store (%s driver): write probe: %w", b.driver.Name(), err)
	}
	if err := b.driver.Delete(ctx, p); err != nil && !isPathNotFound(err) {
		return fmt.Errorf("blob store (%s driver): remove write probe: %w", b.driver.Name(), err)
	}
	return nil
}

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
	return b.create(ctx, b.blobs, blobRepoName)
}

func (b *Blobs) create(ctx context.Context, store distribution.BlobStore, repo string) (*blobWriter, error) {
	w, err := store.Create(ctx)
	if err != nil {
		return nil, fmt.Errorf("create blob upload: %w", err)
	}
	return &blobWriter{w: w, driver: b.driver, repo: repo}, nil
}

type blobWriter struct {
	mu      sync.Mutex
	w       distribution.BlobWriter
	driver  storagedriver.StorageDriver
	repo    string
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

// notFound rewrites distribution's and the drivers' "absent" errors to wrap
// ErrNotFound and passes every other error through.
func notFound(err error) error {
	if errors.Is(err, distribution.ErrBlobUnknown) || isPathNotFound(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func isPathNotFound(err error) bool {
	var pnf storagedriver.PathNotFoundError
	return errors.As(err, &pnf)
}

// Walk calls fn with the digest of every stored blob (manifests excluded),
// for background work such as rescanning under new rules. An error from fn
// stops the walk and is returned.
func (b *Blobs) Walk(ctx context.Context, fn func(digest.Digest) error) error {
	e, ok := b.blobs.(distribution.BlobEnumerator)
	if !ok {
		return errors.New("blob store cannot enumerate its blobs")
	}
	err := e.Enumerate(ctx, fn)
	if isPathNotFound(err) {
		return nil
	}
	return err
}

// WalkManifests calls fn with the digest of every stored manifest.
func (b *Blobs) WalkManifests(ctx context.Context, fn func(digest.Digest) error) error {
	e, ok := b.manifests.(distribution.BlobEnumerator)
	if !ok {
		return errors.New("manifest store cannot enumerate its manifests")
	}
	err := e.Enumerate(ctx, fn)
	if isPathNotFound(err) {
		return nil
	}
	return err
}

// PurgeUploads removes uploads started before olderThan that were never
// committed or cancelled: what a process killed mid-ingest leaves behind.
// They are never visible as blobs; this reclaims their space. With a store
// shared by replicas, olderThan must be before any live upload's start.
func (b *Blobs) PurgeUploads(ctx context.Context, olderThan time.Time) (int, error) {
	// distribution reports a store that never had an upload as an error
	// (as text), so look first.
	if _, err := b.driver.Stat(ctx, uploadsRoot); isPathNotFound(err) {
		return 0, nil
	}
	deleted, errs := distst.PurgeUploads(ctx, b.driver, olderThan, true)
	return len(deleted), errors.Join(errs...)
}

// ReapUploads removes abandoned uploads (see PurgeUploads) older than
// maxAge, right away and then every interval, until ctx ends. A process
// killed mid-ingest leaves its upload behind; reaping while running reclaims
// that space without waiting for a restart. maxAge must outlast any live
// upload: pullgate passes its ingest timeout, past which no ingest runs.
func (b *Blobs) ReapUploads(ctx context.Context, maxAge, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := b.PurgeUploads(ctx, time.Now().Add(-maxAge))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purge abandoned uploads", "err", err)
		case n > 0:
			log.Info("purged abandoned uploads", "uploads", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// BlobInfo describes one stored blob, for keeping the store within a size.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
	Stored time.Time // when its data was written
}

// Usage lists the stored blobs (manifests excluded) with their sizes and
// the time each was stored.
func (b *Blobs) Usage(ctx context.Context) ([]BlobInfo, error) {
	var out []BlobInfo
	err := b.Walk(ctx, func(d digest.Digest) error {
		fi, err := b.driver.Stat(ctx, blobDataPath(d))
		if isPathNotFound(err) {
			return nil // removed since the walk listed it
		}
		if err != nil {
			return fmt.Errorf("stat blob %s: %w", d, err)
		}
		out = append(out, BlobInfo{Digest: d, Size: fi.Size(), Stored: fi.ModTime()})
		return nil
	})
	return out, err
}

// blobDataPath is where distribution keeps a blob's bytes
// (registry/storage/paths.go: blobDataPathSpec).
func blobDataPath(d digest.Digest) string {
	hex := d.Encoded()
	return "/docker/registry/v2/blobs/" + d.Algorithm().String() + "/" + hex[:2] + "/" + hex + "/data"
}
