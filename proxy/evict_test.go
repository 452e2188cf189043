package proxy

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Past its size the store gives up the blobs used least recently; their
// verdicts stay, and an evicted blob asked for again is fetched and scanned
// again, so the image still pulls.
func TestEvictKeepsTheStoreWithinItsSize(t *testing.T) {
	// A bound far above what the test stores: nothing is evicted yet, but
	// the store records what was used when.
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.MaxStoreBytes = 1 << 40 })
	srv := f.srv
	ctx := context.Background()
	old := testregistry.CleanImage("old image, pulled first and not since")
	noise := make([]byte, 64<<10) // incompressible, so the old image is clearly the bigger one
	for i := range noise {
		noise[i] = byte(i*7919 + i/251)
	}
	old.Layers = append(old.Layers, testregistry.Layer(testregistry.File{Path: "srv/old.bin", Data: noise}))
	recent := testregistry.CleanImage("recent image")
	f.hub.Push(t, "library/old", "1", old)
	f.hub.Push(t, "library/recent", "1", recent)
	for _, p := range []string{"/v2/library/old/manifests/1", "/v2/library/recent/manifests/1"} {
		if resp, _ := f.do(t, "GET", p); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	infos, err := f.blobs.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, in := range infos {
		total += in.Size
	}
	if rep, err := srv.gate.Evict(ctx); err != nil || rep.Evicted != 0 {
		t.Fatalf("a store under its bound evicted %+v, %v", rep, err)
	}

	// Room for the recent image's blobs (and a little), not the old one's.
	keep := map[digest.Digest]bool{}
	for _, l := range recent.Layers {
		keep[digest.FromBytes(l)] = true
	}
	_, raw := f.hub.Manifest(t, "library/recent", "1")
	refs, err := gate.BlobsOf(raw, 500)
	if err != nil {
		t.Fatal(err)
	}
	keep[refs[0].Digest] = true
	var recentBytes int64
	for _, in := range infos {
		if keep[in.Digest] {
			recentBytes += in.Size
		}
	}
	srv.gate.SetMaxStoreBytes(recentBytes*10/9 + 10)
	rep, err := srv.gate.Evict(ctx)
	if err != nil || rep.Evicted == 0 || rep.StoreBytes != total {
		t.Fatalf("evict: %+v, %v", rep, err)
	}
	oldLayer := digest.FromBytes(old.Layers[0])
	if _, err := f.blobs.Stat(ctx, oldLayer); err == nil {
		t.Fatal("the least recently used layer is still stored")
	}
	for _, l := range recent.Layers {
		if _, err := f.blobs.Stat(ctx, digest.FromBytes(l)); err != nil {
			t.Fatalf("a recently used layer was evicted: %v", err)
		}
	}
	if _, err := f.store.Verdict(ctx, oldLayer, srv.gate.Scanner().RulesetID(), storage.ContextLayer); err != nil {
		t.Fatalf("the evicted layer's verdict went too: %v", err)
	}

	// The old image still pulls: the evicted layer is fetched again.
	srv.gate.SetMaxStoreBytes(0)
	if resp, _ := f.do(t, "GET", "/v2/library/old/blobs/"+oldLayer.String()); resp.StatusCode != 200 {
		t.Fatalf("evicted layer asked for again: %d", resp.StatusCode)
	}
	if n := f.hub.CDNGets(oldLayer); n != 2 {
		t.Fatalf("evicted layer fetched %d times, want 2", n)
	}
}
