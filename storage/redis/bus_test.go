package redis_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testsync"
)

// received collects what a subscriber is given.
type received struct {
	mu  sync.Mutex
	got []string
}

func (r *received) add(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(p))
}

func (r *received) has(want string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.got, want) {
		return fmt.Errorf("got %q, want %q among them", r.got, want)
	}
	return nil
}

func (r *received) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// A payload published through one store reaches a subscriber on another
// store of the same Redis, and stop ends delivery.
func TestRedisEventBusAcrossStores(t *testing.T) {
	srv := redisserver.Start(t)
	pub, sub := openRedis(t, srv.URL()), openRedis(t, srv.URL())

	var stopped, listening received
	stop := sub.Subscribe(stopped.add)
	stopListening := sub.Subscribe(listening.add)
	defer stopListening()
	if err := pub.Publish(t.Context(), []byte("one")); err != nil {
		t.Fatal(err)
	}
	testsync.WaitFor(t, 5*time.Second, `the stopped subscriber to receive "one"`, func() bool { return stopped.has("one") == nil })
	testsync.WaitFor(t, 5*time.Second, `the listening subscriber to receive "one"`, func() bool { return listening.has("one") == nil })

	stop()
	stop() // twice is harmless
	if err := pub.Publish(t.Context(), []byte("two")); err != nil {
		t.Fatal(err)
	}
	// Once the subscriber still listening has "two", Redis has sent it to
	// every subscription it had.
	testsync.WaitFor(t, 5*time.Second, `the listening subscriber to receive "two"`, func() bool { return listening.has("two") == nil })
	if got := stopped.list(); !slices.Equal(got, []string{"one"}) {
		t.Errorf("the stopped subscriber got %q, want only \"one\"", got)
	}
}

// A publish to a Redis that is gone fails, soon, with an error that names
// the server and not the payload.
func TestRedisEventBusPublishFailsWhenRedisIsDown(t *testing.T) {
	srv := redisserver.Start(t)
	s := openRedis(t, srv.URL())
	srv.Stop()
	start := time.Now()
	err := s.Publish(t.Context(), []byte("secret-payload"))
	if err == nil {
		t.Fatal("Publish succeeded with Redis stopped")
	}
	if msg := err.Error(); !strings.Contains(msg, srv.Addr()) || strings.Contains(msg, "secret-payload") {
		t.Errorf("error = %q: want the server named, not the payload", msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Publish took %s with Redis down", d)
	}
}
