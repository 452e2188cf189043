package storage_test

import (
	"os"
	"syscall"
	"testing"
	"time"

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
