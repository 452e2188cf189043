package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/verdict"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
	pgredis "github.com/pullgate/pullgate/storage/redis"
)

// adminReplicas are replicas (see replicas) that also share the audit
// stream and one webhook receiver, and are closed when the test ends.
func adminReplicas(t *testing.T, hub *testregistry.Registry, hook string, n int) []replica {
	t.Helper()
	rs := replicas(t, hub, n, func(o *Options, store *pgredis.Store) {
		o.Admin = AdminOptions{Token: testAdminToken, Audit: store.AuditLog(0), Bus: store,
			Webhook: events.WebhookOptions{URL: hook, Secret: "webhook-secret-for-tests", Backoff: 20 * time.Millisecond}}
	})
	for _, r := range rs {
		t.Cleanup(func() { closeServer(r.srv) })
	}
	return rs
}

func closeServer(srv *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Close(ctx)
}

// get answers path on r's admin API, decoded into v.
func (r replica) get(t *testing.T, path string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", r.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := httptestClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", path, resp.StatusCode, body, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// blocked returns r's blocked entries for d.
func (r replica) blocked(t *testing.T, d digest.Digest) []admin.BlockedImage {
	t.Helper()
	var list struct{ Blocked []admin.BlockedImage }
	r.get(t, "/admin/api/blocked", &list)
	return slices.DeleteFunc(list.Blocked, func(b admin.BlockedImage) bool { return b.Digest != d })
}

// pulls returns r's recent decisions about d.
func (r replica) pulls(t *testing.T, d digest.Digest) []events.Event {
	t.Helper()
	var list struct{ Pulls []events.Event }
	r.get(t, "/admin/api/pulls?limit=1000", &list)
	return slices.DeleteFunc(list.Pulls, func(ev events.Event) bool { return ev.Digest != d })
}

// pullEvents opens r's event stream and sends the digest of each "pull"
// on the channel it returns, until the test ends.
func (r replica) pullEvents(t *testing.T) <-chan digest.Digest {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", r.url+"/admin/api/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || lines.Text() != "event: hello" {
		t.Fatalf("stream starts with %q", lines.Text())
	}
	out := make(chan digest.Digest, 64)
	go func() {
		defer resp.Body.Close()
		event := ""
		for lines.Scan() {
			line := lines.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "pull":
				var ev events.Event
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) != nil {
					continue
				}
				select {
				case out <- ev.Digest:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// A pull blocked by one replica shows, live, on the other's page, once;
// the deciding replica alone counts it, audits it and alerts on it.
func TestAdminPageSharedAcrossReplicas(t *testing.T) {
	rc := &webhookReceiver{}
	recv := httptest.NewServer(rc)
	defer recv.Close()
	hub := testregistry.Start(t)
	miner := hub.Push(t, "someone/miner", "1", testregistry.MinerImage("shared"))
	clean := hub.Push(t, "library/clean", "1", testregistry.CleanImage("shared"))
	reps := adminReplicas(t, hub, recv.URL+"/hook", 2)
	a, b := reps[0], reps[1]
	streamB := b.pullEvents(t)

	fa := &fixture{url: a.url, client: httptestClient()}
	if resp, body := fa.do(t, "GET", "/v2/someone/miner/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner pull through A: %d %s", resp.StatusCode, body)
	}

	deadline := time.After(10 * time.Second)
	for got := digest.Digest(""); got != miner; {
		select {
		case got = <-streamB:
		case <-deadline:
			t.Fatal("B's event stream did not tell of A's block")
		}
	}
	testsync.WaitFor(t, 10*time.Second, "A's block on B's blocked list", func() bool { return len(b.blocked(t, miner)) > 0 })

	// B's clean pull reaches A after A's own message about the block: one
	// subscription delivers in order, so by then A has seen its own echo.
	fb := &fixture{url: b.url, client: httptestClient()}
	if resp, body := fb.do(t, "GET", "/v2/library/clean/manifests/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("clean pull through B: %d %s", resp.StatusCode, body)
	}
	testsync.WaitFor(t, 10*time.Second, "B's pull on A's page", func() bool { return len(a.pulls(t, clean)) > 0 })

	for name, r := range map[string]replica{"A": a, "B": b} {
		list := r.blocked(t, miner)
		if len(list) != 1 || list[0].Attempts != 1 || list[0].Image != "docker.io/someone/miner:1" || len(list[0].Findings) == 0 {
			t.Errorf("%s's blocked list for the miner: %+v, want one entry of one attempt", name, list)
		}
	}
	aPulls, bPulls := a.pulls(t, miner), b.pulls(t, miner)
	if len(aPulls) == 0 || len(aPulls) != len(bPulls) {
		t.Errorf("decisions about the miner: %d on A, %d on B, want the same", len(aPulls), len(bPulls))
	}
	if n := len(a.pulls(t, clean)); n != len(b.pulls(t, clean)) {
		t.Errorf("decisions about the clean image: %d on A, %d on B, want the same", n, len(b.pulls(t, clean)))
	}

	// Closed, each replica has written its audit records and sent its
	// alerts: what was written and sent is all there will ever be.
	closeServer(a.srv)
	closeServer(b.srv)
	var audit struct{ Records []storage.AuditRecord }
	a.get(t, "/admin/api/audit?digest="+miner.String(), &audit)
	if len(audit.Records) != len(aPulls) {
		t.Errorf("audit records for the miner: %d, want %d (one per decision)", len(audit.Records), len(aPulls))
	}
	if _, got := rc.snapshot(); len(got) != 1 {
		t.Errorf("%d alerts, want 1", len(got))
	}
	var metrics strings.Builder
	resp, err := httptestClient().Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&metrics, resp.Body)
	resp.Body.Close()
	if strings.Contains(metrics.String(), fmt.Sprintf("pullgate_pulls_total{decision=%q}", verdict.Blocked)) {
		t.Error("B counts A's block in its metrics")
	}
}
