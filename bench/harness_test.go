package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// The comparison's harness checked on its own, without PULLGATE_BENCH: the
// file registry serves what a verifying client accepts, the relay passes
// bytes unchanged, and a cached image is rebuilt when a layer changed.

// testImage builds a two-layer fileImage under dir.
func testImage(t *testing.T, dir string) *fileImage {
	t.Helper()
	fi, err := cachedImage(dir, "test", "test", 2, func(i int, w io.Writer) error {
		zw := gzip.NewWriter(w)
		if _, err := zw.Write(bytes.Repeat([]byte{byte('a' + i)}, 1<<20)); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestFileRegistryAndRelayServeVerifiedImage(t *testing.T) {
	fi := testImage(t, t.TempDir())
	up := startFileRegistry(t)
	up.add(fi)
	rl := startRelay(t, strings.TrimPrefix(up.srv.URL, "http://"), 1<<30)
	defer rl.close()
	for _, tc := range []struct {
		name, base string
		throttle   int64
	}{
		{"direct", up.srv.URL, 0},
		{"throttled", up.srv.URL, 64 << 20},
		{"through the relay", rl.url(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.throttle.Store(tc.throttle)
			defer up.throttle.Store(0)
			n, err := pull(context.Background(), http.DefaultClient, tc.base, repo, fi.tag)
			if err != nil {
				t.Fatal(err)
			}
			if want := fi.compressed() + int64(len(fi.manifest)); n != want {
				t.Fatalf("got %d bytes, want %d", n, want)
			}
		})
	}
}

func TestCachedImageRebuildsAChangedLayer(t *testing.T) {
	dir := t.TempDir()
	first := testImage(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "layer1.tar.gz"), []byte("not the layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := testImage(t, dir)
	if first.manifestDigest() != again.manifestDigest() {
		t.Fatalf("rebuilt image has manifest %s, want %s (the build is not deterministic, or the change was kept)", again.manifestDigest(), first.manifestDigest())
	}
	for _, l := range again.layers {
		got, err := describeLayer(l.Path)
		if err != nil || got.Digest != l.Digest {
			t.Fatalf("layer %s on disk is %s (%v), recorded as %s: the changed layer was not rebuilt", l.Path, got.Digest, err, l.Digest)
		}
	}
}
