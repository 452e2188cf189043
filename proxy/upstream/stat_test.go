package upstream

import (
	"context"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// StatBlob says whether a repository carries a blob, with a HEAD: present
// in its own repository, not found in another or when unknown.
func TestStatBlob(t *testing.T) {
	hub := testregistry.Start(t)
	content := []byte("a layer that is only in library/alpine")
	img := pushImage(t, hub, "library/alpine", "3.20", content)
	pushImage(t, hub, "library/busybox", "1", []byte("another layer"))
	r := hubClient(t, hub, "", "")
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
	heads := 0
	for _, q := range hub.Requests() {
		switch {
		case q.CDN:
			t.Errorf("StatBlob went to the CDN: %s %s", q.Method, q.Path)
		case q.Method == "GET" && strings.Contains(q.Path, "/blobs/"):
			t.Errorf("StatBlob downloaded: GET %s", q.Path)
		case q.Method == "HEAD" && strings.Contains(q.Path, "/blobs/"):
			heads++
		}
	}
	if heads == 0 {
		t.Error("no blob HEAD reached the registry, so the checks above prove nothing")
	}
}
