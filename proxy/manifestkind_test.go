package proxy

import (
	"context"
	"net/http"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// The media type recorded beside a stored manifest is not covered by its
// digest. Rewritten to an index's (which is served without the gate), a
// refused image manifest must still be refused, never served as an index.
func TestStoredMediaTypeMustMatchTheBytes(t *testing.T) {
	f := newFixture(t)
	img := testregistry.MinerImage("miner")
	mdgst := f.hub.Push(t, "someone/tool", "latest", img)
	path := "/v2/someone/tool/manifests/" + mdgst.String()
	if resp, body := f.do(t, "GET", path); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	ctx := context.Background()
	body, _, err := f.blobs.Manifest(ctx, mdgst)
	if err != nil {
		t.Fatalf("the refused manifest is not in the store, so this test proves nothing: %v", err)
	}
	if err := f.blobs.PutManifest(ctx, mdgst, ocispec.MediaTypeImageIndex, body); err != nil {
		t.Fatal(err)
	}
	if _, mt, _ := f.blobs.Manifest(ctx, mdgst); mt != ocispec.MediaTypeImageIndex {
		t.Fatalf("the store did not take the rewritten media type (%q): this test proves nothing", mt)
	}
	for _, method := range []string{"GET", "HEAD"} {
		resp, got := f.do(t, method, path)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") == ocispec.MediaTypeImageIndex {
			t.Fatalf("%s after the media type was rewritten: %d %s %s", method, resp.StatusCode, resp.Header.Get("Content-Type"), got)
		}
	}
}

// A manifest's bytes are served only at the manifests endpoint, where the
// gate judges the image: asked for as a blob, a refused image manifest is
// not served.
func TestManifestNotServedAsABlob(t *testing.T) {
	f := newFixture(t)
	mdgst := f.hub.Push(t, "someone/tool", "latest", testregistry.MinerImage("miner"))
	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/latest"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("manifest: %d %s", resp.StatusCode, body)
	}
	for _, method := range []string{"GET", "HEAD"} {
		if resp, body := f.do(t, method, "/v2/someone/tool/blobs/"+mdgst.String()); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s the refused manifest as a blob: %d %s", method, resp.StatusCode, body)
		}
	}
}
