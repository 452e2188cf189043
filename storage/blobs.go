package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/distribution/distribution/v3"
	distst "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage/internal/dcheck"
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
	// What each internal repository is known to hold (presence.go).
	blobsHere, manifestsHere *presence
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
	return &Blobs{driver: d, blobs: blobs, manifests: manifests,
		blobsHere: newPresence(maxPresent), manifestsHere: newPresence(maxPresent)}, nil
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

// Driver returns the storage driver underneath, for tests and tools.
func (b *Blobs) Driver() storagedriver.StorageDriver { return b.driver }

// Stat returns the size of a committed blob, or an error wrapping
// ErrNotFound.
func (b *Blobs) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return 0, fmt.Errorf("stat blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	size, err := b.stat(ctx, dgst)
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", dgst, err)
	}
	return size, nil
}

// stat is Stat without the validation: from what this process knows is
// there, else from the driver (see presence.go).
func (b *Blobs) stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	if e, ok := b.blobsHere.get(dgst); ok {
		return e.size, nil
	}
	gen := b.blobsHere.generation()
	desc, err := b.blobs.Stat(ctx, dgst)
	if err != nil {
		return 0, notFound(err)
	}
	b.blobsHere.found(dgst, present{size: desc.Size}, gen)
	return desc.Size, nil
}

// Open returns a reader over a committed blob and its size. The reader
// seeks, so it can be handed to http.ServeContent for Range requests.
func (b *Blobs) Open(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, int64, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return nil, 0, fmt.Errorf("open blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	size, err := b.stat(ctx, dgst)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", dgst, err)
	}
	if size == 0 {
		// Some drivers (s3-aws) fail to read an empty object back; there
		// is nothing to read.
		return nopSeekCloser{bytes.NewReader(nil)}, 0, nil
	}
	rc, err := b.blobs.Open(ctx, dgst)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", dgst, b.gone(b.blobsHere, dgst, err))
	}
	return rc, size, nil
}

type nopSeekCloser struct{ io.ReadSeeker }

// Reader returns a plain reader over a committed blob's bytes, from the
// start, and its size. It reads the driver directly: distribution's blob
// reader (what Open returns) puts a 4 MiB buffer in front of every open
// blob, which a server streaming to hundreds of clients cannot afford. For
// the filesystem driver the reader is the open file, so it costs no buffer
// at all; the caller brings its own.
func (b *Blobs) Reader(ctx context.Context, dgst digest.Digest) (io.ReadCloser, int64, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return nil, 0, fmt.Errorf("read blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	size, err := b.stat(ctx, dgst)
	if err != nil {
		return nil, 0, fmt.Errorf("read blob %s: %w", dgst, err)
	}
	if size == 0 {
		// Some drivers (s3-aws) fail to read an empty object back.
		return io.NopCloser(bytes.NewReader(nil)), 0, nil
	}
	rc, err := b.driver.Reader(ctx, blobDataPath(dgst), 0)
	if err != nil {
		return nil, 0, fmt.Errorf("read blob %s: %w", dgst, b.gone(b.blobsHere, dgst, err))
	}
	return rc, size, nil
}

func (nopSeekCloser) Close() error { return nil }

// Delete removes a blob: first its link, so it stops being served at once,
// then its data.
func (b *Blobs) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := dcheck.Validate(dgst); err != nil {
		return fmt.Errorf("delete blob %q: %w: %w", dgst, ErrInvalid, err)
	}
	// Forgotten before (no reader is sent to it from here on) and after
	// (a look-up that raced the removal is not kept).
	b.blobsHere.forget(dgst)
	defer b.blobsHere.forget(dgst)
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

// gone is notFound for a read of a digest the store was thought to hold:
// when its file is absent (another replica removed it), it is forgotten.
func (b *Blobs) gone(here *presence, dgst digest.Digest, err error) error {
	err = notFound(err)
	if errors.Is(err, ErrNotFound) {
		here.forget(dgst)
	}
	return err
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

// blobDataPath is where distribution keeps a blob's bytes
// (registry/storage/paths.go: blobDataPathSpec).
func blobDataPath(d digest.Digest) string {
	hex := d.Encoded()
	return "/docker/registry/v2/blobs/" + d.Algorithm().String() + "/" + hex[:2] + "/" + hex + "/data"
}
