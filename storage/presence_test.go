package storage_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// countingDriver counts the reads of distribution's link files: what a
// "is this blob here" question costs the driver.
type countingDriver struct {
	storagedriver.StorageDriver
	links atomic.Int64
}

func (d *countingDriver) GetContent(ctx context.Context, path string) ([]byte, error) {
	if strings.HasSuffix(path, "/link") {
		d.links.Add(1)
	}
	return d.StorageDriver.GetContent(ctx, path)
}

// replicas are two stores over one driver, as two pullgate processes
// sharing a bucket.
func replicas(t *testing.T) (a, b *storage.Blobs, d *countingDriver) {
	t.Helper()
	d = &countingDriver{StorageDriver: inmemory.New()}
	a, err := storage.NewBlobs(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	b, err = storage.NewBlobs(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, d
}

func commitBlob(t *testing.T, b *storage.Blobs, p []byte) digest.Digest {
	t.Helper()
	w, err := b.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(p)
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), d, int64(len(p))); err != nil {
		t.Fatal(err)
	}
	return d
}

// The store knows what it holds without asking the driver, and is never
// wrong about a blob this process wrote or removed.
func TestPresenceIsExact(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// act does something to a blob d that replica a committed; b is
		// another replica.
		act func(t *testing.T, a, b *storage.Blobs, d digest.Digest)
		// present: what a.Stat must say after act; links: how many link
		// files that Stat may read.
		present bool
		links   int64
	}{
		{name: "written", act: func(*testing.T, *storage.Blobs, *storage.Blobs, digest.Digest) {}, present: true, links: 0},
		{name: "deleted (eviction and quarantine delete)", act: func(t *testing.T, a, _ *storage.Blobs, d digest.Digest) {
			if err := a.Delete(ctx, d); err != nil {
				t.Fatal(err)
			}
		}, present: false, links: 1},
		{name: "removed by another replica, then read", act: func(t *testing.T, a, b *storage.Blobs, d digest.Digest) {
			if err := b.Delete(ctx, d); err != nil {
				t.Fatal(err)
			}
			if _, _, err := a.Reader(ctx, d); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("reading a blob removed behind the store's back: %v, want not found", err)
			}
		}, present: false, links: 1},
		{name: "manifest deleted", act: func(t *testing.T, a, _ *storage.Blobs, d digest.Digest) {
			// A manifest of the same digest is another store: its removal
			// leaves the blob known.
			if err := a.PutManifest(ctx, d, "application/vnd.oci.image.manifest.v1+json", []byte("blob")); err != nil {
				t.Fatal(err)
			}
			if err := a.DeleteManifest(ctx, d); err != nil {
				t.Fatal(err)
			}
		}, present: true, links: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, drv := replicas(t)
			d := commitBlob(t, a, []byte("blob"))
			tc.act(t, a, b, d)
			before := drv.links.Load()
			_, err := a.Stat(ctx, d)
			if got := err == nil; got != tc.present {
				t.Fatalf("present %v (%v), want %v", got, err, tc.present)
			}
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				t.Fatal(err)
			}
			if n := drv.links.Load() - before; n != tc.links {
				t.Fatalf("Stat read %d link files, want %d", n, tc.links)
			}
		})
	}
}

// A blob another replica committed is found by asking the driver once,
// and remembered from then on.
func TestPresenceMissesThrough(t *testing.T) {
	a, b, drv := replicas(t)
	d := commitBlob(t, b, []byte("from the other replica"))
	for i, want := range []int64{1, 0} {
		before := drv.links.Load()
		if _, err := a.Stat(t.Context(), d); err != nil {
			t.Fatalf("look-up %d: %v", i, err)
		}
		if n := drv.links.Load() - before; n != want {
			t.Fatalf("look-up %d read %d link files, want %d", i, n, want)
		}
	}
	if _, err := a.Stat(t.Context(), digest.FromString("absent")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("an absent blob: %v", err)
	}
}

// Manifests: written, read back without asking whether they are linked,
// and a manifest removed behind the store's back is not found.
func TestPresenceOfManifests(t *testing.T) {
	ctx := context.Background()
	a, b, drv := replicas(t)
	body := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(body)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	if err := a.PutManifest(ctx, d, mt, body); err != nil {
		t.Fatal(err)
	}
	before := drv.links.Load()
	got, gotMT, err := a.Manifest(ctx, d)
	if err != nil || string(got) != string(body) || gotMT != mt {
		t.Fatalf("Manifest: %q %q %v", got, gotMT, err)
	}
	if n := drv.links.Load() - before; n != 0 {
		t.Fatalf("reading a manifest this store wrote read %d link files", n)
	}
	if err := b.DeleteManifest(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Manifest(ctx, d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a manifest removed by another replica: %v", err)
	}
	if ok, err := a.IsManifest(ctx, d); ok || err != nil {
		t.Fatalf("IsManifest after its removal was found: %v %v", ok, err)
	}
}
