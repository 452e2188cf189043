package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/s3server"
)

func TestBlobsWalk(t *testing.T) {
	ctx := context.Background()
	b, err := NewFilesystemBlobs(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var none []digest.Digest
	if err := b.Walk(ctx, func(d digest.Digest) error { none = append(none, d); return nil }); err != nil || len(none) != 0 {
		t.Fatalf("empty store: %v %v", none, err)
	}
	var want []digest.Digest
	for _, s := range []string{"one", "two", "three"} {
		w, err := b.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		d := digest.FromString(s)
		if err := w.Commit(ctx, d, int64(len(s))); err != nil {
			t.Fatal(err)
		}
		want = append(want, d)
	}
	if err := b.PutManifest(ctx, digest.FromString("{}"), "application/vnd.oci.image.manifest.v1+json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	if err := b.Walk(ctx, func(d digest.Digest) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("walked %v, want %v", got, want)
	}
}

func TestBlobsWalkManifests(t *testing.T) {
	ctx := context.Background()
	b, err := NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{digest.FromString(`{"a":1}`), digest.FromString(`{"b":2}`)}
	for _, body := range []string{`{"a":1}`, `{"b":2}`} {
		if err := b.PutManifest(ctx, digest.FromString(body), "application/vnd.oci.image.manifest.v1+json", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	var got []digest.Digest
	if err := b.WalkManifests(ctx, func(d digest.Digest) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("walked %v, want %v", got, want)
	}
}

// An upload a killed process left behind is purged; a committed blob and a
// fresh upload are not.
func TestPurgeUploads(t *testing.T) {
	ctx := context.Background()
	b, err := NewFilesystemBlobs(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.PurgeUploads(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("empty store: %d, %v", n, err)
	}
	left, err := b.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := left.Write([]byte("half a layer")); err != nil {
		t.Fatal(err)
	}
	w, err := b.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("whole")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, digest.FromString("whole"), 5); err != nil {
		t.Fatal(err)
	}
	n, err := b.PurgeUploads(ctx, time.Now().Add(time.Second))
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want the one abandoned upload", n, err)
	}
	if _, err := b.Stat(ctx, digest.FromString("whole")); err != nil {
		t.Fatalf("a committed blob went with the uploads: %v", err)
	}
	fresh, err := b.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Cancel(ctx)
	if n, err := b.PurgeUploads(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("a fresh upload was purged: %d, %v", n, err)
	}
}

func TestBlobsUsage(t *testing.T) {
	ctx := context.Background()
	b, err := NewFilesystemBlobs(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	for _, s := range []string{"a", "bbbb"} {
		w, err := b.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx, digest.FromString(s), int64(len(s))); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := b.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[digest.Digest]int64{}
	for _, in := range infos {
		sizes[in.Digest] = in.Size
		if in.Stored.Before(before) {
			t.Errorf("%s stored at %s, before the test began", in.Digest, in.Stored)
		}
	}
	if len(sizes) != 2 || sizes[digest.FromString("a")] != 1 || sizes[digest.FromString("bbbb")] != 4 {
		t.Fatalf("usage %v", infos)
	}
}

// Walk and Usage work on the S3 driver as on the filesystem.
func TestS3WalkAndUsage(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Shared(t)
	b, err := NewS3Blobs(ctx, S3Config{Bucket: s3server.Bucket, Region: "us-east-1", Endpoint: srv.Endpoint,
		AccessKey: s3server.AccessKey, SecretKey: s3server.SecretKey, RootDirectory: "/walk-usage-" + time.Now().Format("150405.000000000"), Insecure: true, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("on s3")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, digest.FromString("on s3"), 5); err != nil {
		t.Fatal(err)
	}
	infos, err := b.Usage(ctx)
	if err != nil || len(infos) != 1 || infos[0].Digest != digest.FromString("on s3") || infos[0].Size != 5 {
		t.Fatalf("usage %+v, %v", infos, err)
	}
	err = redactSecret(errors.New("signature for wrong-secret-value does not match"), "wrong-secret-value")
	if strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("the secret key is in the error: %v", err)
	}
}
