package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
	pgredis "github.com/pullgate/pullgate/storage/redis"
)

// replica is one of several pullgate servers sharing one Redis and one
// blob store; store is its own connection to that Redis.
type replica struct {
	srv   *Server
	url   string
	store *pgredis.Store
}

// replicas starts n servers sharing one Redis and one blob store; mod sets
// each one's options.
func replicas(t *testing.T, hub *testregistry.Registry, n int, mod func(*Options, *pgredis.Store)) []replica {
	t.Helper()
	ctx := context.Background()
	redis := redisserver.Start(t)
	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []replica
	for range n {
		store, err := pgredis.Open(ctx, redis.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		opts := Options{Options: gate.Options{
			Upstreams: map[string]*upstream.Registry{"docker.io": loopbackUpstream(t, hub.URL())},
			Blobs:     blobs, Verdicts: store, Scanner: testScanner(t),
			Locks: store, Releases: store,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}}
		if mod != nil {
			mod(&opts, store)
		}
		srv, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		out = append(out, replica{srv: srv, url: ts.URL, store: store})
	}
	return out
}

// replicaSet is n servers with the given ingest lease: their URLs and the
// first one's store.
func replicaSet(t *testing.T, hub *testregistry.Registry, n int, lease time.Duration) ([]string, storage.Store) {
	t.Helper()
	rs := replicas(t, hub, n, func(o *Options, _ *pgredis.Store) { o.IngestLease = lease })
	urls := make([]string, len(rs))
	for i, r := range rs {
		urls[i] = r.url
	}
	return urls, rs[0].store
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

// lateLocker is a replica's verdict store in which another replica
// finishes each ingest (scan, verdict, lease released) just before this
// one takes the lease: the window between its look-up and its lock.
type lateLocker struct {
	*pgredis.Store
	mu     sync.Mutex
	raced  map[string]bool
	before func(key string)
}

func (l *lateLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (storage.Lease, error) {
	l.mu.Lock()
	first := !l.raced[key]
	l.raced[key] = true
	l.mu.Unlock()
	if first {
		l.before(key)
	}
	return l.Store.TryLock(ctx, key, ttl)
}

// A replica that gets the lease after another replica finished the same
// ingest uses that verdict instead of fetching and scanning again.
func TestReplicaTakesTheVerdictOfAnIngestThatJustFinished(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("late")
	hub.Push(t, "library/late", "1", img)
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	var other string
	var log testsync.Buffer
	rs := replicas(t, hub, 2, func(o *Options, store *pgredis.Store) {
		if other != "" {
			return
		}
		other = "pending"
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
		late := &lateLocker{Store: store, raced: map[string]bool{}, before: func(key string) {
			f := &fixture{url: other, client: httptestClient()}
			d := strings.TrimPrefix(key, "ingest:")
			d = d[:strings.LastIndexByte(d, ':')] // the context follows the digest
			if resp, body := f.do(t, "GET", "/v2/library/late/blobs/"+d); resp.StatusCode != 200 {
				t.Errorf("other replica, blob %s: %d %s", d, resp.StatusCode, body)
			}
		}}
		o.Verdicts, o.Locks = late, late
	})
	other = rs[1].url

	f := &fixture{url: rs[0].url, client: httptestClient()}
	if resp, body := f.do(t, "GET", "/v2/library/late/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	blobs := [][]byte{built.Config}
	blobs = append(blobs, img.Layers...)
	for _, b := range blobs {
		d := digest.FromBytes(b)
		if n := hub.CDNGets(d); n != 1 {
			t.Errorf("blob %s fetched %d times from upstream, want once (by the replica that finished first)", d, n)
		}
	}
	if n := strings.Count(log.String(), "msg=scanned"); n != 0 {
		t.Errorf("the replica that came second scanned %d blobs, want none:\n%s", n, log.String())
	}
}
