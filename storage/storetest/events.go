package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
)

// RunAudit is the conformance suite every storage.AuditLog must pass. open
// returns a new, empty log each call and arranges for it to be closed;
// reopen, when not nil, closes l and returns a log over the same data.
func RunAudit(t *testing.T, open func(t *testing.T) storage.AuditLog, reopen func(t *testing.T, l storage.AuditLog) storage.AuditLog) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l storage.AuditLog)
	}{
		{"RoundTripNewestFirst", testAuditRoundTrip},
		{"ByDigest", testAuditByDigest},
		{"ByImage", testAuditByImage},
		{"Limit", testAuditLimit},
		{"ConcurrentAppends", testAuditConcurrent},
		{"Invalid", testAuditInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
	if reopen != nil {
		t.Run("Reopen", func(t *testing.T) {
			t.Parallel()
			l := open(t)
			appendAll(t, l, pullRecord(1, "docker.io/library/a:1", "a"))
			l = reopen(t, l)
			got := query(t, l, storage.AuditQuery{})
			if len(got) != 1 || got[0].Image != "docker.io/library/a:1" {
				t.Fatalf("after reopen: %+v", got)
			}
		})
	}
}

func pullRecord(i int, image, dgst string) storage.AuditRecord {
	return storage.AuditRecord{
		Time:      time.Date(2025, 1, 2, 3, 4, i, 0, time.UTC),
		Kind:      storage.AuditPull,
		Client:    fmt.Sprintf("10.0.0.%d", i),
		UserAgent: "docker/27.0",
		Image:     image,
		Digest:    Digest(dgst),
		Decision:  verdict.Allowed,
		Latency:   time.Duration(i) * time.Millisecond,
	}
}

func appendAll(t *testing.T, l storage.AuditLog, rs ...storage.AuditRecord) {
	t.Helper()
	for _, r := range rs {
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

func query(t *testing.T, l storage.AuditLog, q storage.AuditQuery) []storage.AuditRecord {
	t.Helper()
	got, err := l.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("Query(%+v): %v", q, err)
	}
	return got
}

func testAuditRoundTrip(t *testing.T, l storage.AuditLog) {
	full := pullRecord(1, "docker.io/someone/miner:1", "m")
	full.Decision = verdict.Blocked
	full.Reason = "pullgate: blocked"
	full.Findings = []storage.Finding{{Rule: "MinerXMRig", Category: "miner", Severity: "high", Description: "XMRig", Path: "/usr/bin/kworker", Layer: Digest("layer")}}
	over := storage.AuditRecord{Time: full.Time.Add(time.Second), Kind: storage.AuditOverride, Actor: "admin", Subject: string(Digest("m")), Action: "allow", Reason: "false positive"}
	appendAll(t, l, full, over)
	got := query(t, l, storage.AuditQuery{})
	if want := []storage.AuditRecord{over, full}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func testAuditByDigest(t *testing.T, l storage.AuditLog) {
	a := pullRecord(1, "docker.io/library/a:1", "a")
	b := pullRecord(2, "docker.io/library/b:1", "b")
	b.Findings = []storage.Finding{{Rule: "R", Layer: Digest("layer-b")}}
	o := storage.AuditRecord{Kind: storage.AuditOverride, Actor: "admin", Subject: string(Digest("a")), Action: "deny", Reason: "r"}
	appendAll(t, l, a, b, o)
	if got := query(t, l, storage.AuditQuery{Digest: Digest("a")}); len(got) != 2 || got[0].Kind != storage.AuditOverride || got[1].Image != a.Image {
		t.Errorf("by digest a: %+v", got)
	}
	if got := query(t, l, storage.AuditQuery{Digest: Digest("layer-b")}); len(got) != 1 || got[0].Image != b.Image {
		t.Errorf("by a finding's layer: %+v", got)
	}
	if got := query(t, l, storage.AuditQuery{Kind: storage.AuditOverride}); len(got) != 1 || got[0].Subject != string(Digest("a")) {
		t.Errorf("by kind: %+v", got)
	}
	if got := query(t, l, storage.AuditQuery{Digest: Digest("none")}); got == nil || len(got) != 0 {
		t.Errorf("nothing should match, as an empty slice: %#v", got)
	}
}

func testAuditByImage(t *testing.T, l storage.AuditLog) {
	appendAll(t, l,
		pullRecord(1, "docker.io/library/alpine:3.20", "x"),
		pullRecord(2, "docker.io/library/alpine@"+string(Digest("y")), "y"),
		pullRecord(3, "docker.io/library/alpine-extra:1", "z"),
		storage.AuditRecord{Kind: storage.AuditOverride, Actor: "admin", Subject: "docker.io/library/alpine", Action: "deny", Reason: "r"},
	)
	if got := query(t, l, storage.AuditQuery{Image: "docker.io/library/alpine"}); len(got) != 3 {
		t.Errorf("by repository: %d records %+v", len(got), got)
	}
	if got := query(t, l, storage.AuditQuery{Image: "docker.io/library/alpine:3.20"}); len(got) != 1 {
		t.Errorf("by tag: %+v", got)
	}
}

func testAuditLimit(t *testing.T, l storage.AuditLog) {
	for i := 0; i < 30; i++ {
		appendAll(t, l, pullRecord(i%60, fmt.Sprintf("docker.io/library/img%d:1", i), fmt.Sprint(i)))
	}
	got := query(t, l, storage.AuditQuery{Limit: 5})
	if len(got) != 5 || got[0].Image != "docker.io/library/img29:1" || got[4].Image != "docker.io/library/img25:1" {
		t.Fatalf("limit 5: %+v", got)
	}
}

func testAuditConcurrent(t *testing.T, l storage.AuditLog) {
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.Append(context.Background(), pullRecord(i%60, fmt.Sprintf("docker.io/library/c%d:1", i), fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := query(t, l, storage.AuditQuery{Limit: 1000}); len(got) != n {
		t.Fatalf("%d records after %d concurrent appends", len(got), n)
	}
}

func testAuditInvalid(t *testing.T, l storage.AuditLog) {
	if err := l.Append(context.Background(), storage.AuditRecord{Image: "x"}); err == nil {
		t.Fatal("accepted a record without a kind")
	}
	r := pullRecord(1, "docker.io/library/a:1", "a")
	r.Time = time.Time{}
	appendAll(t, l, r)
	if got := query(t, l, storage.AuditQuery{}); len(got) != 1 || got[0].Time.IsZero() {
		t.Fatalf("time not set on append: %+v", got)
	}
}
