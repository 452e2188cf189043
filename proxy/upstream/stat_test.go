package upstream

import (
	"context"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// StatBlob says whether a repository carries a blob, with a HEAD: present
// in its own repository, not found in another or when unknown.
func TestStatBlob(t *testing.T) {
	f := newFixture(t)
	content := []byte("a layer that is only in library/alpine")
	img := f.push("library/alpine", "3.20", content)
	f.push("library/busybox", "1", []byte("another layer"))
	r := f.client(t, "", "")
	ctx := context.Background()

	size, err := r.StatBlob(ctx, "library/alpine", img.layer.Digest)
	if err != nil || size != int64(len(content)) {
		t.Fatalf("StatBlob in its repository: %d, %v; want %d", size, err, len(content))
	}
	for name, c := range map[string]struct {
		repo string
		dgst digest.Digest
	}{
		"another repository": {"library/busybox", img.layer.Digest},
		"unknown digest":     {"library/alpine", digest.FromString("nothing here")},
	} {
		if _, err := r.StatBlob(ctx, c.repo, c.dgst); !IsNotFound(err) {
			t.Errorf("StatBlob, %s: %v, want not found", name, err)
		}
	}
	requests, _, cdn, _ := f.seen()
	if len(cdn) != 0 {
		t.Errorf("StatBlob went to the CDN %d times", len(cdn))
	}
	for _, q := range requests {
		if strings.HasPrefix(q, "GET ") && strings.Contains(q, "/blobs/") {
			t.Errorf("StatBlob downloaded: %s", q)
		}
	}
}
