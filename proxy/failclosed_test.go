package proxy

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/scanner"
	pgredis "github.com/pullgate/pullgate/storage/redis"
)

// Without its verdict store pullgate knows nothing, so it serves nothing:
// with Redis gone, a cached image and its blobs are refused (503, with the
// reason), a cold one is not fetched; when Redis is back they are served.
func TestRedisOutageFailsClosed(t *testing.T) {
	redis := redisserver.Start(t)
	store, err := pgredis.Open(context.Background(), redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := newFixture(t, func(o *Options, _ *scanner.Options) {
		o.Verdicts = store
		o.TagTTL = time.Nanosecond // every pull asks upstream, and the store, again
	})
	img := testregistry.CleanImage("outage")
	f.hub.Push(t, "library/outage", "1", img)
	cold := testregistry.CleanImage("cold")
	f.hub.Push(t, "library/cold", "1", cold)
	if resp, body := f.do(t, "GET", "/v2/library/outage/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("before the outage: %d %s", resp.StatusCode, body)
	}
	layer := "/v2/library/outage/blobs/" + digest.FromBytes(img.Layers[0]).String()

	redis.Stop()
	for _, path := range []string{"/v2/library/outage/manifests/1", layer, "/v2/library/cold/manifests/1"} {
		resp, body := f.do(t, "GET", path)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s during the outage: %d %s", path, resp.StatusCode, body)
		}
		if code, _ := ociError(t, body); code != "UNAVAILABLE" {
			t.Fatalf("%s: code %s", path, code)
		}
	}
	if n := f.hub.CDNGets(digest.FromBytes(cold.Layers[0])); n != 0 {
		t.Fatalf("a cold layer was fetched (%d) while no verdict could be stored", n)
	}

	redis.Restart()
	testsync.WaitFor(t, 20*time.Second, "the image to be served again after Redis is back", func() bool {
		resp, _ := f.do(t, "GET", "/v2/library/outage/manifests/1")
		return resp.StatusCode == 200
	})
	if resp, _ := f.do(t, "GET", layer); resp.StatusCode != 200 {
		t.Fatalf("layer after the outage: %d", resp.StatusCode)
	}
}
