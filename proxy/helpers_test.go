package proxy

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

// The pieces a test server is built on, each closed when the test ends.

// testScanner is a scanner of one worker over rules (the built-in set when
// none are given).
func testScanner(t testing.TB, rules ...string) *scanner.Scanner {
	t.Helper()
	sc, err := scanner.New(scanner.Options{Workers: 1, RulePaths: rules})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// testStores is an in-memory blob store and an embedded verdict store.
func testStores(t testing.TB) (*storage.Blobs, *bolt.Store) {
	t.Helper()
	blobs, err := storage.NewInMemoryBlobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(t.TempDir(), "verdicts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return blobs, store
}

// loopbackUpstream is Docker Hub at url, a stand-in on loopback whose CDN
// listens on another loopback address.
func loopbackUpstream(t testing.TB, url string) *upstream.Registry {
	t.Helper()
	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: url,
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	return up
}

// serverOver runs pullgate, with the default options, in front of up.
func serverOver(t testing.TB, up *upstream.Registry) *fixture {
	t.Helper()
	blobs, store := testStores(t)
	srv, err := New(Options{Options: gate.Options{Upstreams: map[string]*upstream.Registry{up.Name(): up}, Blobs: blobs, Verdicts: store,
		Scanner: testScanner(t), Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &fixture{srv: srv, url: ts.URL, blobs: blobs, store: store, client: ts.Client()}
}
