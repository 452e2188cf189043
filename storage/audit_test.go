package storage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
	pgredis "github.com/pullgate/pullgate/storage/redis"
	"github.com/pullgate/pullgate/storage/storetest"
)

func openFileAudit(t *testing.T, path string) *storage.FileAuditLog {
	t.Helper()
	l, err := storage.OpenFileAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestFileAuditConformance(t *testing.T) {
	var mu sync.Mutex
	paths := map[storage.AuditLog]string{}
	storetest.RunAudit(t,
		func(t *testing.T) storage.AuditLog {
			p := filepath.Join(t.TempDir(), "audit.jsonl")
			l := openFileAudit(t, p)
			mu.Lock()
			paths[l] = p
			mu.Unlock()
			return l
		},
		func(t *testing.T, l storage.AuditLog) storage.AuditLog {
			mu.Lock()
			p := paths[l]
			mu.Unlock()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			return openFileAudit(t, p)
		})
}

func TestTeeAuditConformance(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) storage.AuditLog {
		srv := redisserver.Start(t)
		return storage.TeeAuditLog{openRedis(t, srv.URL()).AuditLog(0), openFileAudit(t, filepath.Join(t.TempDir(), "a.jsonl"))}
	}, nil)
}

// Blocks boundaries and torn lines: a query reads across 64 KiB blocks and
// skips a line a crash cut short.
func TestFileAuditLongLogAndTornLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFileAudit(t, p)
	long := strings.Repeat("x", 2000) // under MaxReasonBytes
	for i := 0; i < 100; i++ {
		if err := l.Append(context.Background(), storage.AuditRecord{Kind: storage.AuditPull, Image: fmt.Sprintf("docker.io/library/n%d:1", i), Reason: long}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"kind":"pull","ima`)
	f.Close()
	// Reopened after the crash, the next record lands on a line of its own.
	l.Close()
	l = openFileAudit(t, p)
	if err := l.Append(context.Background(), storage.AuditRecord{Kind: storage.AuditPull, Image: "docker.io/library/n100:1", Reason: long}); err != nil {
		t.Fatal(err)
	}
	got, err := l.Query(context.Background(), storage.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 101 {
		t.Fatalf("%d records, want 101", len(got))
	}
	for i, r := range got {
		if want := fmt.Sprintf("docker.io/library/n%d:1", 100-i); r.Image != want || r.Reason != long {
			t.Fatalf("record %d: image %q, want %q", i, r.Image, want)
		}
	}
}

// The file log rotates when it passes its size, keeps the generations it
// was told to, and queries read them all, newest first.
func TestFileAuditLogRotates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := storage.OpenFileAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.SetRotation(1000, 2)
	const n = 60
	for i := range n {
		if err := l.Append(ctx, storage.AuditRecord{Kind: storage.AuditPull, Image: fmt.Sprintf("docker.io/library/r%02d:1", i), Decision: verdict.Allowed}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatalf("generation %s: %v", name, err)
		}
		if st.Size() > 1000+200 {
			t.Errorf("%s is %d bytes, past the rotation size", name, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("more generations kept than asked: %v", err)
	}
	got, err := l.Query(ctx, storage.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) >= n {
		t.Fatalf("%d records back: the oldest should have rotated away, the rest be found", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Image < got[i].Image {
			t.Fatalf("not newest first: %s before %s", got[i-1].Image, got[i].Image)
		}
	}
	if got[0].Image != fmt.Sprintf("docker.io/library/r%02d:1", n-1) {
		t.Fatalf("newest record %s", got[0].Image)
	}
}

func openRedis(t *testing.T, url string) *pgredis.Store {
	t.Helper()
	s, err := pgredis.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("open redis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
