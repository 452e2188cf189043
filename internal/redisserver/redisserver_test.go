package redisserver_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/internal/redisserver"
)

func client(t *testing.T, s *redisserver.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%s): %v", s.URL(), err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestStartServesAndStops(t *testing.T) {
	s := redisserver.Start(t)
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want loopback", s.Addr())
	}
	c := client(t, s)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// Started without persistence.
	cfg, err := c.ConfigGet(t.Context(), "appendonly").Result()
	if err != nil || cfg["appendonly"] != "no" {
		t.Fatalf("CONFIG GET appendonly = %v, %v", cfg, err)
	}

	pid := s.PID()
	s.Stop()
	if alive(pid) {
		t.Fatalf("redis-server pid %d still alive after Stop", pid)
	}
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	s.Stop() // twice is harmless
}

func TestServersAreIndependent(t *testing.T) {
	var wg sync.WaitGroup
	servers := make([]*redisserver.Server, 4)
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i] = redisserver.Start(t)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, s := range servers {
		if s == nil {
			t.Fatalf("server %d did not start", i)
		}
		if seen[s.Addr()] {
			t.Fatalf("two servers on %s", s.Addr())
		}
		seen[s.Addr()] = true
		if err := client(t, s).Set(t.Context(), "who", fmt.Sprint(i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range servers {
		if got, err := client(t, s).Get(t.Context(), "who").Result(); err != nil || got != fmt.Sprint(i) {
			t.Fatalf("server %d: GET who = %q, %v", i, got, err)
		}
	}
}

func TestRestartWithPersistence(t *testing.T) {
	s := redisserver.StartWith(t, "--appendonly", "yes")
	c := client(t, s)
	if err := c.Set(t.Context(), "kept", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr, pid := s.Addr(), s.PID()
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if s.PID() == pid || alive(pid) {
		t.Fatalf("Restart kept the old process %d", pid)
	}
	got, err := client(t, s).Get(t.Context(), "kept").Result()
	if err != nil || got != "yes" {
		t.Fatalf("GET after restart with appendonly = %q, %v", got, err)
	}
}

func TestRestartWithoutPersistenceForgets(t *testing.T) {
	s := redisserver.Start(t)
	if err := client(t, s).Set(t.Context(), "gone", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if err := client(t, s).Get(t.Context(), "gone").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart without persistence: %v, want redis.Nil", err)
	}
}

func TestStartWithPassword(t *testing.T) {
	s := redisserver.StartWith(t, "--requirepass", "pw")
	if err := client(t, s).Ping(t.Context()).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: %v, want NOAUTH", err)
	}
}

// fatalTB records a Fatal and ends the goroutine, as testing.T would.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestMissingBinaryFailsWithInstructions(t *testing.T) {
	t.Setenv(redisserver.EnvBinary, "/nonexistent/redis-server")
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redisserver.Start(f)
	}()
	<-done
	if !strings.Contains(f.msg, "make deps") {
		t.Fatalf("missing redis-server: message %q does not say to run make deps", f.msg)
	}
}

func TestBadArgumentsFailWithOutput(t *testing.T) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redisserver.StartWith(f, "--no-such-option", "1")
	}()
	<-done
	if !strings.Contains(f.msg, "exited before answering PING") || !strings.Contains(strings.ToLower(f.msg), "no-such-option") {
		t.Fatalf("bad arguments: message %q does not show redis-server's complaint", f.msg)
	}
}
