package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/storage"
)

func TestBlobsReader(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		for _, n := range []int{0, 1, 200_000} {
			p := randomBytes(t, n)
			dgst := commit(t, b, p)
			rc, size, err := b.Reader(t.Context(), dgst)
			if err != nil {
				t.Fatalf("Reader(%d bytes): %v", n, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || size != int64(n) || !bytes.Equal(got, p) {
				t.Fatalf("Reader(%d bytes) = size %d, %d bytes read, %v", n, size, len(got), err)
			}
		}
		if _, _, err := b.Reader(t.Context(), digest.FromString("absent")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Reader of an absent blob: %v, want ErrNotFound", err)
		}
	})
}

// failingWrites is a driver whose writes fail once fail is set, as on a
// full disk; reads still work.
type failingWrites struct {
	storagedriver.StorageDriver
	fail atomic.Bool
}

var errDiskFull = errors.New("no space left on device")

func (d *failingWrites) PutContent(ctx context.Context, path string, content []byte) error {
	if d.fail.Load() {
		return errDiskFull
	}
	return d.StorageDriver.PutContent(ctx, path, content)
}

func (d *failingWrites) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	if d.fail.Load() {
		return nil, errDiskFull
	}
	return d.StorageDriver.Writer(ctx, path, append)
}

func TestBlobsProbeWrite(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		if err := b.ProbeWrite(t.Context()); err != nil {
			t.Fatalf("ProbeWrite on a working store: %v", err)
		}
		if left := files(t, b, "/pullgate/probe"); len(left) != 0 {
			t.Fatalf("the probe left files behind: %q", left)
		}
	})
	t.Run("writes fail", func(t *testing.T) {
		d := &failingWrites{StorageDriver: inmemory.New()}
		b, err := storage.NewBlobs(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		d.fail.Store(true)
		if err := b.Ping(t.Context()); err != nil {
			t.Fatalf("reads should still work: %v", err)
		}
		if err := b.ProbeWrite(t.Context()); !errors.Is(err, errDiskFull) {
			t.Fatalf("ProbeWrite with failing writes: %v, want the driver's error", err)
		}
	})
}

func TestReapUploadsWhileRunning(t *testing.T) {
	b, err := storage.NewFilesystemBlobs(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kept := commit(t, b, []byte("a committed blob"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An age long enough that the upload is still there when the test
		// looks for it right after writing, even on a loaded machine (at
		// 100 ms a pass could take it first).
		b.ReapUploads(ctx, time.Second, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	}()

	// Started after the reaper's first pass: only a pass while running
	// can remove it.
	left, err := b.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := left.Write([]byte("half a layer")); err != nil {
		t.Fatal(err)
	}
	if len(files(t, b, uploadsRoot)) == 0 {
		t.Fatal("the upload wrote no files")
	}
	testsync.WaitFor(t, 10*time.Second, "the abandoned upload to be reaped while running",
		func() bool { return len(files(t, b, uploadsRoot)) == 0 })
	if _, err := b.Stat(t.Context(), kept); err != nil {
		t.Fatalf("a committed blob went with the uploads: %v", err)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the reaper did not stop with its context")
	}
}

// A manifest whose stored bytes no longer match is removed and reported
// absent, so that the caller fetches it again instead of failing on it.
func TestCorruptManifestIsRemoved(t *testing.T) {
	root := t.TempDir()
	b, err := storage.NewFilesystemBlobs(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"schemaVersion":2,"note":"corrupt me"}`)
	dgst := digest.FromBytes(body)
	if err := b.PutManifest(t.Context(), dgst, ociManifest, body); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "docker/registry/v2/blobs/sha256", dgst.Encoded()[:2], dgst.Encoded(), "data")
	if err := os.WriteFile(file, bytes.ToUpper(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Manifest(t.Context(), dgst)
	if !errors.Is(err, storage.ErrDigestMismatch) || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Manifest of corrupt bytes: %v, want a digest mismatch reported as absent", err)
	}
	if _, _, err := b.Manifest(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Manifest after removal: %v, want plain ErrNotFound", err)
	}
	if err := b.PutManifest(t.Context(), dgst, ociManifest, body); err != nil {
		t.Fatalf("store the manifest again: %v", err)
	}
	if got, _, err := b.Manifest(t.Context(), dgst); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Manifest after storing again: %q, %v", got, err)
	}
}
