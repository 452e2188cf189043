package storage_test

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/storage"
)

// A read counts as a file's verification only when the file last changed
// a margin before the read began: 50 ms where the filesystem keeps
// sub-second times (the test's temporary folder does), so a blob
// committed just before a warm pull is remembered after one hashing serve,
// not only a second later.
func TestVerifiedMarginFollowsTheFilesTimes(t *testing.T) {
	b, err := storage.NewFilesystemBlobs(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dgst := commit(t, b, randomBytes(t, 70_000))
	rc, _, err := b.Reader(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, ok := rc.(*os.File)
	if !ok {
		t.Fatalf("the filesystem store's reader is a %T, not a file", rc)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	changed := time.Unix(0, max(st.Ctim.Nano(), st.Mtim.Nano()))
	if changed.Nanosecond() == 0 {
		t.Skip("this filesystem keeps whole-second times: the one-second margin applies")
	}
	cases := []struct {
		name     string
		began    time.Time
		verified bool
	}{
		{"read begun as the file changed", changed, false},
		{"read begun 10 ms after the change", changed.Add(10 * time.Millisecond), false},
		{"read begun 49 ms after the change", changed.Add(49 * time.Millisecond), false},
		{"read begun 60 ms after the change", changed.Add(60 * time.Millisecond), true},
	}
	for _, c := range cases {
		b.SetVerified(dgst, f, c.began)
		if got := b.Verified(dgst, f); got != c.verified {
			t.Fatalf("%s: verified %v, want %v", c.name, got, c.verified)
		}
	}
}

// Verify hashes a blob just committed once its file has settled, and the
// store then remembers it verified: its first serve needs no hashing. A
// file whose bytes were changed on disk does not verify.
func TestVerifyRemembersACommittedBlob(t *testing.T) {
	b, err := storage.NewFilesystemBlobs(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dgst := commit(t, b, randomBytes(t, 70_000))
	if verifiedNow(t, b, dgst) {
		t.Fatal("a blob just committed counts as verified before anything read it")
	}
	ok, err := b.Verify(t.Context(), dgst)
	if err != nil || !ok {
		t.Fatalf("Verify of a committed blob: %v, %v; want true, nil", ok, err)
	}
	if !verifiedNow(t, b, dgst) {
		t.Fatal("Verify returned true, but the blob's file does not count as verified")
	}
	if ok, err := b.Verify(t.Context(), dgst); ok || err != nil {
		t.Fatalf("Verify of a blob already verified: %v, %v; want false, nil (nothing to do)", ok, err)
	}

	bad := commit(t, b, randomBytes(t, 70_000))
	rc, _, err := b.Reader(t.Context(), bad)
	if err != nil {
		t.Fatal(err)
	}
	name := rc.(*os.File).Name()
	rc.Close()
	if err := os.WriteFile(name, randomBytes(t, 70_000), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Verify(t.Context(), bad); ok || !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Verify of a blob changed on disk: %v, %v; want false and a digest mismatch", ok, err)
	}
	if verifiedNow(t, b, bad) {
		t.Fatal("a blob changed on disk counts as verified")
	}
}

// verifiedNow opens the blob and asks whether its file counts as verified.
func verifiedNow(t *testing.T, b *storage.Blobs, dgst digest.Digest) bool {
	t.Helper()
	rc, _, err := b.Reader(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return b.Verified(dgst, rc.(*os.File))
}
