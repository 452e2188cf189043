package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// replicaSet is n pullgate servers sharing one Redis and one blob store.
func replicaSet(t *testing.T, hub *testregistry.Registry, n int, lease time.Duration) ([]string, storage.Store) {
	t.Helper()
	ctx := context.Background()
	redis := redisserver.Start(t)
	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	var first storage.Store
	for range n {
		store, err := storage.OpenRedis(ctx, redis.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		if first == nil {
			first = store
		}
		up, err := upstream.New(upstream.Config{Name: "docker.io", URL: hub.URL()})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := scanner.New(scanner.Options{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		srv, err := New(Options{
			Upstreams: map[string]*upstream.Registry{"docker.io": up}, Blobs: blobs, Verdicts: store, Scanner: sc,
			IngestLease: lease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		urls = append(urls, ts.URL)
	}
	return urls, first
}

func TestReplicasIngestEachBlobOnce(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("replicas")
	hub.Push(t, "library/shared", "1", img)
	urls, _ := replicaSet(t, hub, 2, 5*time.Second)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			f := &fixture{url: urls[i%2], client: httptestClient()}
			if resp, body := f.do(t, "GET", "/v2/library/shared/manifests/1"); resp.StatusCode != 200 {
				t.Errorf("replica %d: %d %s", i%2, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	for _, l := range img.Layers {
		if n := hub.CDNGets(digest.FromBytes(l)); n != 1 {
			t.Errorf("layer fetched %d times by two replicas", n)
		}
	}
}

// A replica that dies holding the lease stops renewing it; another takes
// over once it expires instead of waiting forever.
func TestReplicaTakesOverFromACrashedOne(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("crashed")
	hub.Push(t, "library/orphan", "1", img)
	urls, store := replicaSet(t, hub, 1, 500*time.Millisecond)
	for _, l := range img.Layers {
		// The "crashed" replica's lease: taken, never renewed or released.
		if _, err := store.(storage.Locker).TryLock(context.Background(), "ingest:"+digest.FromBytes(l).String(), 500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{url: urls[0], client: httptestClient()}
	if resp, body := f.do(t, "GET", "/v2/library/orphan/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
