package redis_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/redis"
	"github.com/pullgate/pullgate/storage/storetest"
)

func openRedis(t *testing.T, url string) *redis.Store {
	t.Helper()
	s, err := redis.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRedisConformance(t *testing.T) {
	var mu sync.Mutex
	urls := map[storage.Store]string{}
	storetest.Run(t,
		func(t *testing.T) storage.Store {
			srv := redisserver.Start(t)
			s := openRedis(t, srv.URL())
			mu.Lock()
			urls[s] = srv.URL()
			mu.Unlock()
			return s
		},
		storetest.WithReopen(func(t *testing.T, s storage.Store) storage.Store {
			mu.Lock()
			url := urls[s]
			mu.Unlock()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openRedis(t, url)
		}),
		storetest.WithLegacyVerdicts(redis.PutLegacyVerdict),
	)
}

func TestRedisLocker(t *testing.T) {
	srv := redisserver.Start(t) // one server: every test uses its own keys
	storetest.RunLocker(t, func(t *testing.T) storage.Locker {
		return openRedis(t, srv.URL())
	})
}

func TestRedisKeysArePrefixed(t *testing.T) {
	srv := redisserver.Start(t)
	s := openRedis(t, srv.URL())
	d := storetest.Digest("prefixed")
	if err := s.PutVerdict(t.Context(), storetest.SampleVerdict(d, "rules-v1", storage.StatusClean)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTag(t.Context(), "docker.io/library/alpine:3", storage.TagRecord{Digest: d}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOverride(t.Context(), storage.Override{Subject: string(d), Action: storage.Deny, Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	keys := redisKeys(t, srv.URL())
	if len(keys) != 3 {
		t.Fatalf("keys = %q, want 3", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "pullgate:") {
			t.Errorf("key %q lacks the pullgate: prefix", k)
		}
	}
}

// TestRedisGoneMidUse stops Redis under an open store: every call must
// come back quickly with an error that names Redis and is not ErrNotFound,
// and the store must recover when Redis is back.
func TestRedisGoneMidUse(t *testing.T) {
	srv := redisserver.Start(t)
	s := openRedis(t, srv.URL())
	d := storetest.Digest("gone")
	if err := s.PutVerdict(t.Context(), storetest.SampleVerdict(d, "rules-v1", storage.StatusClean)); err != nil {
		t.Fatal(err)
	}

	srv.Stop()

	calls := map[string]func(ctx context.Context) error{
		"Verdict": func(ctx context.Context) error {
			_, err := s.Verdict(ctx, d, "rules-v1", storage.ContextLayer)
			return err
		},
		"Verdicts": func(ctx context.Context) error { _, err := s.Verdicts(ctx, d); return err },
		"PutVerdict": func(ctx context.Context) error {
			return s.PutVerdict(ctx, storetest.SampleVerdict(d, "rules-v2", storage.StatusClean))
		},
		"Override":  func(ctx context.Context) error { _, err := s.Override(ctx, string(d)); return err },
		"Overrides": func(ctx context.Context) error { _, err := s.Overrides(ctx); return err },
		"Tag":       func(ctx context.Context) error { _, err := s.Tag(ctx, "docker.io/library/alpine:3"); return err },
		"Ping":      func(ctx context.Context) error { return s.Ping(ctx) },
		"TryLock":   func(ctx context.Context) error { _, err := s.TryLock(ctx, "ingest", time.Minute); return err },
	}
	for name, call := range calls {
		start := time.Now()
		// No deadline from the caller: the store's own timeouts must end it.
		err := call(context.Background())
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s with Redis down succeeded", name)
			continue
		}
		if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s with Redis down: %v; an outage must not read as not found", name, err)
		}
		if !strings.Contains(err.Error(), "redis "+srv.Addr()) && !strings.Contains(err.Error(), "redis://"+srv.Addr()) {
			t.Errorf("%s with Redis down: %q does not name the Redis server", name, err)
		}
		if took > 10*time.Second {
			t.Errorf("%s with Redis down took %s", name, took)
		}
	}

	// go-redis stops dialling a server that refused too often and retries
	// in the background about once a second: wait for that, with a deadline.
	srv.Restart()
	testsync.WaitFor(t, 15*time.Second, "the restarted Redis to answer a ping", func() bool { return s.Ping(t.Context()) == nil })
	if _, err := s.Verdict(t.Context(), d, "rules-v1", storage.ContextLayer); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Verdict after restart without persistence: %v, want ErrNotFound", err)
	}
}

func TestOpenRedisFailsFastWhenDown(t *testing.T) {
	srv := redisserver.Start(t)
	url := srv.URL()
	srv.Stop()
	start := time.Now()
	_, err := redis.Open(context.Background(), url)
	if err == nil {
		t.Fatal("OpenRedis of a stopped server succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("OpenRedis took %s", took)
	}
}

func TestOpenRedisNeverShowsPassword(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	srv := redisserver.StartWith(t, "--requirepass", "right-password")
	cases := map[string]string{
		"wrong password":          "redis://:" + secret + "@" + srv.Addr() + "/0",
		"user and wrong password": "redis://default:" + secret + "@" + srv.Addr() + "/0",
		"bad db":                  "redis://:" + secret + "@" + srv.Addr() + "/notanumber",
		"bad scheme":              "http://:" + secret + "@" + srv.Addr() + "/0",
		"malformed":               "redis://:" + secret + "@[::1/0",
	}
	for name, url := range cases {
		_, err := redis.Open(t.Context(), url)
		if err == nil {
			t.Errorf("%s: OpenRedis succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}

	s := openRedis(t, "redis://:right-password@"+srv.Addr()+"/0")
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping with the right password: %v", err)
	}
}

// redisKeys lists every key in the server at url, read with a client of its
// own so the test does not trust the store it checks.
func redisKeys(t *testing.T, url string) []string {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	return keys
}

// TestRedisReadsOverridesOfTheLastRelease writes overrides into Redis as
// the release before Override.Image did, with a client of its own, and
// reads them with their meaning.
func TestRedisReadsOverridesOfTheLastRelease(t *testing.T) {
	srv := redisserver.Start(t)
	opts, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	for _, l := range storetest.LegacyOverrides() {
		if err := c.HSet(t.Context(), "pullgate:overrides", l.Want.Subject, l.Raw).Err(); err != nil {
			t.Fatal(err)
		}
	}
	storetest.CheckLegacyOverrides(t, openRedis(t, srv.URL()))
}
