package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
)

// hugeUA is a user agent as an attacker sends it, unauthenticated.
var hugeUA = strings.Repeat("A", 600<<10)

func overrideRecord(at time.Time) storage.AuditRecord {
	return storage.AuditRecord{Time: at, Kind: storage.AuditOverride, Actor: "admin", Subject: "docker.io/library/x",
		Action: "allow", Reason: "vetted by the security team"}
}

// No volume of pulls pushes an override change out of the audit log, and
// every record is cut to its bounds before it is written.
func TestAuditOverridesOutlivePulls(t *testing.T) {
	cases := map[string]func(t *testing.T) storage.AuditLog{
		"file": func(t *testing.T) storage.AuditLog {
			l := openFileAudit(t, filepath.Join(t.TempDir(), "audit.jsonl"))
			l.SetRotation(16<<10, 1)
			return l
		},
		"redis": func(t *testing.T) storage.AuditLog {
			return openRedis(t, redisserver.Start(t).URL()).AuditLog(10)
		},
	}
	for name, open := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			l := open(t)
			start := time.Now().UTC().Add(-time.Hour)
			if err := l.Append(ctx, overrideRecord(start)); err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				r := storage.AuditRecord{Time: start.Add(time.Duration(i+1) * time.Second), Kind: storage.AuditPull,
					Client: "10.0.0.9", UserAgent: hugeUA, Image: "docker.io/library/x:1", Decision: verdict.Allowed}
				if err := l.Append(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			got, err := l.Query(ctx, storage.AuditQuery{Image: "docker.io/library/x", Limit: storage.MaxAuditLimit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < 2 || got[len(got)-1].Kind != storage.AuditOverride || got[0].Kind != storage.AuditPull {
				t.Fatalf("query for the image: %d records, want the newest pulls first and the override last", len(got))
			}
			if len(got) > 200 {
				t.Fatalf("%d records: the pull records were not bounded", len(got))
			}
			ua := got[0].UserAgent
			if len(ua) > storage.MaxFieldBytes || !strings.HasSuffix(ua, "…[cut]") {
				t.Fatalf("user agent stored as %d bytes, ending %q", len(ua), ua[max(len(ua)-10, 0):])
			}
			overrides, err := l.Query(ctx, storage.AuditQuery{Kind: storage.AuditOverride})
			if err != nil || len(overrides) != 1 || overrides[0].Reason != "vetted by the security team" {
				t.Fatalf("overrides: %+v, %v", overrides, err)
			}
		})
	}
}

// A log written before override changes had a file of their own still
// shows them, and keeps them once the pull records rotate away.
func TestFileAuditKeepsOverridesOfAnEarlierLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var old []byte
	for i, r := range []storage.AuditRecord{
		{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Kind: storage.AuditPull, Image: "docker.io/library/x:1", Decision: verdict.Blocked},
		overrideRecord(time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC)),
		{Time: time.Date(2025, 1, 1, 0, 0, 2, 0, time.UTC), Kind: storage.AuditPull, Image: "docker.io/library/x:1", Decision: verdict.Allowed},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(i, err)
		}
		old = append(append(old, b...), '\n')
	}
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	l := openFileAudit(t, path)
	l.SetRotation(4<<10, 1)
	got, err := l.Query(ctx, storage.AuditQuery{Image: "docker.io/library/x"})
	if err != nil || len(got) != 3 || got[1].Kind != storage.AuditOverride {
		t.Fatalf("the earlier log read back as %+v, %v", got, err)
	}
	for i := range 100 {
		if err := l.Append(ctx, storage.AuditRecord{Kind: storage.AuditPull, Image: fmt.Sprintf("docker.io/library/y%d:1", i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err = l.Query(ctx, storage.AuditQuery{Kind: storage.AuditOverride})
	if err != nil || len(got) != 1 || got[0].Subject != "docker.io/library/x" {
		t.Fatalf("after the earlier pulls rotated away: %+v, %v", got, err)
	}
	if got, _ := l.Query(ctx, storage.AuditQuery{Image: "docker.io/library/x"}); len(got) != 1 {
		t.Fatalf("the override change is counted %d times", len(got))
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 20), 12, "aaaa…[cut]"},
		{"aéééééé", 12, "aé…[cut]"}, // never inside a UTF-8 sequence
	} {
		if got := storage.Clip(tc.in, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// A record full of characters JSON escapes at six bytes each still fits
// its bound as written.
func TestAuditRecordBytesBounded(t *testing.T) {
	ctrl := strings.Repeat("\x01", 1<<20)
	var fs []storage.Finding
	for range 100 {
		fs = append(fs, storage.Finding{Rule: ctrl, Description: ctrl, Path: ctrl})
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openFileAudit(t, path)
	r := storage.AuditRecord{Kind: storage.AuditPull, Client: ctrl, UserAgent: ctrl, Image: ctrl, Reason: ctrl, Findings: fs}
	if err := l.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > storage.MaxAuditRecordBytes {
		t.Fatalf("record written as %d bytes, over %d", st.Size(), storage.MaxAuditRecordBytes)
	}
}
