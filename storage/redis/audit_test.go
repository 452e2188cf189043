package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/storetest"
	goredis "github.com/redis/go-redis/v9"
)

func TestAuditConformance(t *testing.T) {
	var mu sync.Mutex
	urls := map[storage.AuditLog]string{}
	storetest.RunAudit(t,
		func(t *testing.T) storage.AuditLog {
			// One Redis per log: every log starts empty.
			srv := redisserver.Start(t)
			l := openRedis(t, srv.URL()).AuditLog(0)
			mu.Lock()
			urls[l] = srv.URL()
			mu.Unlock()
			return l
		},
		func(t *testing.T, l storage.AuditLog) storage.AuditLog {
			mu.Lock()
			u := urls[l]
			mu.Unlock()
			return openRedis(t, u).AuditLog(0)
		})
}

// The Redis stream keeps only the newest entries.
func TestAuditRetention(t *testing.T) {
	srv := redisserver.Start(t)
	l := openRedis(t, srv.URL()).AuditLog(10)
	for i := 0; i < 25; i++ {
		if err := l.Append(context.Background(), storage.AuditRecord{Kind: storage.AuditPull, Image: fmt.Sprintf("docker.io/library/r%d:1", i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Query(context.Background(), storage.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0].Image != "docker.io/library/r24:1" {
		t.Fatalf("kept %d entries, newest %+v; want 10, newest r24", len(got), got[0])
	}
}

func overrideRecord(at time.Time) storage.AuditRecord {
	return storage.AuditRecord{Time: at, Kind: storage.AuditOverride, Actor: "admin", Subject: "docker.io/library/x",
		Action: "allow", Reason: "vetted by the security team"}
}

// The same for a Redis stream written before override changes had a
// stream of their own.
func TestAuditKeepsOverridesOfAnEarlierStream(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	opts, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(opts)
	defer raw.Close()
	b, _ := json.Marshal(overrideRecord(time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC)))
	if err := raw.XAdd(ctx, &goredis.XAddArgs{Stream: "pullgate:audit", Values: []any{"r", string(b)}}).Err(); err != nil {
		t.Fatal(err)
	}
	l := openRedis(t, srv.URL()).AuditLog(10)
	for i := range 50 {
		if err := l.Append(ctx, storage.AuditRecord{Kind: storage.AuditPull, Image: fmt.Sprintf("docker.io/library/y%d:1", i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Query(ctx, storage.AuditQuery{Kind: storage.AuditOverride})
	if err != nil || len(got) != 1 || got[0].Subject != "docker.io/library/x" {
		t.Fatalf("override change of the earlier stream: %+v, %v", got, err)
	}
	// A second process copies nothing again.
	if got, _ := openRedis(t, srv.URL()).AuditLog(10).Query(ctx, storage.AuditQuery{Kind: storage.AuditOverride}); len(got) != 1 {
		t.Fatalf("%d override changes after a second process started", len(got))
	}
}
