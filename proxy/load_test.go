//go:build !race

// The load test runs without the race detector (make test-unit runs it so):
// under it, parsing 600 MB of request headers takes minutes.

package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/admin/admintest"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
	pgredis "github.com/pullgate/pullgate/storage/redis"
)

// longestLine remembers the longest line written to it (a log).
type longestLine struct {
	mu  sync.Mutex
	max int
}

func (l *longestLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(string(p), "\n") {
		l.max = max(l.max, len(line))
	}
	return len(p), nil
}

func (l *longestLine) longest() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max
}

// rssBytes is this process's resident set size.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("VmRSS not found")
	return 0
}

func heapBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func redisUsedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("used_memory not in INFO memory")
	return 0
}

// Bounds the hostile load must stay under. The pull records in Redis are
// at most loadRetention entries of storage.MaxAuditRecordBytes each; the
// rest is the slack of Redis's own structures.
const (
	loadPulls         = 1000
	loadUserAgent     = 600 << 10
	loadRetention     = 500
	loadRedisGrowth   = loadRetention*storage.MaxAuditRecordBytes + 2<<20 // 6 MiB
	loadHeapGrowth    = 32 << 20
	loadRSSGrowth     = 200 << 20
	loadAdminPageSize = 1 << 20
)

// A thousand unauthenticated pulls, each with a 600 KB user agent, against
// a server sharing Redis: the operator's override stays in the audit log,
// Redis, the heap and the admin page stay within their bounds, and no log
// line carries the user agent whole.
func TestLoadHugeUserAgentsStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	ctx := context.Background()
	hub := testregistry.Start(t)
	hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))

	rs := redisserver.Start(t)
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opts)
	t.Cleanup(func() { rc.Close() })
	store, err := pgredis.Open(ctx, rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	file, err := storage.OpenFileAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	file.SetRotation(1<<20, 1)
	t.Cleanup(func() { file.Close() })
	audit := storage.TeeAuditLog{store.AuditLog(loadRetention), file}

	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs := &longestLine{}
	srv, err := New(Options{
		Options: gate.Options{Upstreams: map[string]*upstream.Registry{"docker.io": loopbackUpstream(t, hub.URL())}, Blobs: blobs, Verdicts: store, Scanner: testScanner(t),
			Logger: slog.New(slog.NewTextHandler(logs, nil))},
		Admin: AdminOptions{Token: testAdminToken, Audit: audit},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	client := ts.Client()
	do := func(method, path, ua, auth string, body io.Reader) (*http.Response, []byte) {
		if auth == "" {
			return admintest.Request(t, client, ts.URL, method, path, "", body, "User-Agent", ua)
		}
		return admintest.Request(t, client, ts.URL, method, path, "bearer:"+auth, body, "User-Agent", ua, "Content-Type", "application/json")
	}

	// The operator allows the repository (which lifts the publisher policy
	// only: the miner stays refused); the change is audited. Every pull
	// after it is a refusal, recorded with its user agent.
	if resp, body := do("POST", "/admin/api/overrides", "curl", testAdminToken,
		overrideJSON("docker.io/someone/miner", "allow", "vendor tool, reviewed")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("allow: %d %s", resp.StatusCode, body)
	}
	if resp, body := do("GET", "/v2/someone/miner/manifests/1", "containerd/2.0", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("first pull: %d %s", resp.StatusCode, body)
	}

	redisBefore, heapBefore, rssBefore := redisUsedMemory(t, rc), heapBytes(), rssBytes(t)
	start := time.Now()
	// Raw requests on kept-alive connections, as an attacker would send
	// them: the load is on the server, not on a client checking headers.
	raw := []byte("GET /v2/someone/miner/manifests/1 HTTP/1.1\r\nHost: pullgate\r\nUser-Agent: containerd/2.0 " +
		strings.Repeat("A", loadUserAgent) + "\r\n\r\n")
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				failed.Add(1)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for next.Add(1) <= loadPulls {
				if _, err := conn.Write(raw); err != nil {
					failed.Add(1)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					failed.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d pulls failed", n, loadPulls)
	}
	// The audit records are written off the request path: wait for the
	// last one.
	testsync.WaitFor(t, 20*time.Second, "the audit log to take every pull", func() bool {
		recs, err := audit.Query(ctx, storage.AuditQuery{Kind: storage.AuditPull, Limit: loadRetention})
		return err == nil && len(recs) == loadRetention && srv.audit.Queued() == 0
	})
	redisAfter, heapAfter, rssAfter := redisUsedMemory(t, rc), heapBytes(), rssBytes(t)
	t.Logf("%d pulls with a %d KB user agent in %s: redis used_memory %d -> %d KB, heap %d -> %d KB, RSS %d -> %d KB, longest log line %d bytes",
		loadPulls, loadUserAgent>>10, elapsed.Round(time.Millisecond), redisBefore>>10, redisAfter>>10,
		heapBefore>>10, heapAfter>>10, rssBefore>>10, rssAfter>>10, logs.longest())

	// The override is still in the audit log, as the API answers it.
	_, body := do("GET", "/admin/api/audit?image=someone/miner&limit=10000", "curl", testAdminToken, nil)
	var got struct{ Records []storage.AuditRecord }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("audit query: %.300s", body)
	}
	overrides := 0
	for _, r := range got.Records {
		if r.Kind == storage.AuditOverride && r.Action == "allow" && r.Subject == "docker.io/someone/miner" {
			overrides++
		}
	}
	if overrides != 1 {
		t.Fatalf("the audit query for the image returns %d records, %d of them the override", len(got.Records), overrides)
	}
	if g := redisAfter - redisBefore; g > loadRedisGrowth {
		t.Errorf("redis grew by %d bytes, over %d", g, loadRedisGrowth)
	}
	if g := heapAfter - heapBefore; g > loadHeapGrowth {
		t.Errorf("the heap grew by %d bytes, over %d", g, loadHeapGrowth)
	}
	if g := rssAfter - rssBefore; g > loadRSSGrowth {
		t.Errorf("RSS grew by %d bytes, over %d", g, loadRSSGrowth)
	}
	if n := logs.longest(); n > 8<<10 {
		t.Errorf("a log line of %d bytes", n)
	}
	resp, page := do("GET", "/admin/", "curl", testAdminToken, nil)
	if resp.StatusCode != 200 || len(page) > loadAdminPageSize {
		t.Errorf("admin page: %d, %d bytes", resp.StatusCode, len(page))
	}
	_, body = do("GET", "/admin/api/pulls?n=1", "curl", testAdminToken, nil)
	var pulls struct{ Pulls []events.Event }
	if err := json.Unmarshal(body, &pulls); err != nil || len(pulls.Pulls) == 0 {
		t.Fatalf("pulls: %.200s", body)
	}
	if u := pulls.Pulls[0].UserAgent; len(u) > storage.MaxFieldBytes || !strings.HasSuffix(u, "…[cut]") {
		t.Errorf("the live view keeps a user agent of %d bytes", len(u))
	}
}
