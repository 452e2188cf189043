package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/verdict"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/proxy/admin/admintest"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

const (
	testAdminToken    = admintest.AdminToken
	testReadOnlyToken = admintest.ReadOnlyToken
)

type adminFixture struct {
	*fixture
	audit storage.AuditLog
	logs  *testsync.Buffer
}

func newAdminFixture(t *testing.T, mods ...func(*Options)) *adminFixture {
	t.Helper()
	audit, err := storage.OpenFileAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	logs := &testsync.Buffer{}
	f := newFixture(t, func(o *Options, _ *scanner.Options) {
		o.Admin = AdminOptions{Token: testAdminToken, ReadOnlyToken: testReadOnlyToken, Audit: audit}
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, m := range mods {
			m(o)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Close(ctx)
		for _, tok := range []string{testAdminToken, testReadOnlyToken} {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("a token appears in the logs")
			}
		}
	})
	return &adminFixture{fixture: f, audit: audit, logs: logs}
}

// req sends an admin request (admintest.Request).
func (f *adminFixture) req(t *testing.T, method, path, auth string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return admintest.Request(t, f.client, f.url, method, path, auth, body, hdr...)
}

func overrideJSON(subject, action, reason string) io.Reader {
	b, _ := json.Marshal(admin.OverrideRequest{Subject: subject, Action: action, Reason: reason})
	return bytes.NewReader(b)
}

// A blocked pull shows on the API with its file and rule; allowing the
// image (by digest) lets the next pull through, the change is audited, and
// removing the allow blocks it again.
func TestAdminBlockedThenAllowed(t *testing.T) {
	f := newAdminFixture(t)
	mdgst := f.hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))
	bad := digest.FromBytes(testregistry.MinerImage("miner").Layers[2])
	asAdmin := "bearer:" + testAdminToken

	if resp, body := f.do(t, "GET", "/v2/someone/miner/manifests/1"); resp.StatusCode != 403 {
		t.Fatalf("miner pull: %d %s", resp.StatusCode, body)
	}
	var blocked struct{ Blocked []admin.BlockedImage }
	_, body := f.req(t, "GET", "/admin/api/blocked", asAdmin, nil)
	if err := json.Unmarshal(body, &blocked); err != nil || len(blocked.Blocked) != 1 {
		t.Fatalf("blocked: %s", body)
	}
	b := blocked.Blocked[0]
	if b.Digest != mdgst || b.Image != "docker.io/someone/miner:1" || b.Attempts != 1 || len(b.Findings) == 0 ||
		b.Findings[0].Path != "/usr/bin/kworker" || b.Findings[0].Layer != bad || b.Findings[0].Rule == "" {
		t.Fatalf("blocked entry: %+v", b)
	}
	var pulls struct{ Pulls []events.Event }
	_, body = f.req(t, "GET", "/admin/api/pulls", asAdmin, nil)
	if err := json.Unmarshal(body, &pulls); err != nil || len(pulls.Pulls) == 0 || pulls.Pulls[0].Decision != verdict.Blocked {
		t.Fatalf("pulls: %s", body)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/miner/blobs/"+bad.String()); resp.StatusCode != 403 {
		t.Fatalf("blocked layer asked for alone: %d", resp.StatusCode)
	}

	resp, body := f.req(t, "POST", "/admin/api/overrides", asAdmin,
		overrideJSON("docker.io/someone/miner@"+mdgst.String(), "allow", "vendor tool, reviewed"), "Content-Type", "application/json")
	var created struct{ Overrides []storage.Override }
	if err := json.Unmarshal(body, &created); resp.StatusCode != 201 || err != nil || len(created.Overrides) != 1 ||
		created.Overrides[0].Subject != mdgst.String() || created.Overrides[0].Actor != "admin" {
		t.Fatalf("allow: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "GET", "/v2/someone/miner/manifests/1")
	if resp.StatusCode != 200 {
		t.Fatalf("pull after allow: %d %s", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/miner/blobs/"+bad.String()); resp.StatusCode != 200 {
		t.Fatalf("allowed layer: %d", resp.StatusCode)
	}
	// The blob's own decisions are recorded: the refusal, then the allow.
	blobDecisions := map[verdict.Outcome]int{}
	for _, ev := range f.srv.live.Recent(100) {
		if ev.Digest == bad && ev.Image == "docker.io/someone/miner" {
			blobDecisions[ev.Decision]++
		}
	}
	if blobDecisions[verdict.Blocked] != 1 || blobDecisions[verdict.Overridden] != 1 {
		t.Fatalf("decisions recorded for the layer: %v", blobDecisions)
	}

	var audit struct{ Records []storage.AuditRecord }
	_, body = f.req(t, "GET", "/admin/api/audit?digest="+mdgst.String(), asAdmin, nil)
	if err := json.Unmarshal(body, &audit); err != nil {
		t.Fatal(err)
	}
	type kind struct {
		kind     string
		decision verdict.Outcome
		action   string
	}
	kinds := map[kind]int{}
	for _, r := range audit.Records {
		kinds[kind{r.Kind, r.Decision, r.Action}]++
	}
	if kinds[kind{storage.AuditOverride, 0, string(storage.Allow)}] != 1 || kinds[kind{storage.AuditPull, verdict.Blocked, ""}] != 1 ||
		kinds[kind{storage.AuditPull, verdict.Overridden, ""}] == 0 {
		t.Fatalf("audit for %s: %v\n%s", mdgst, kinds, body)
	}
	_, body = f.req(t, "GET", "/admin/api/audit?image=someone/miner", asAdmin, nil)
	if err := json.Unmarshal(body, &audit); err != nil || len(audit.Records) < 2 {
		t.Fatalf("audit by image: %s", body)
	}

	var rep admin.VerdictReport
	_, body = f.req(t, "GET", "/admin/api/verdicts/"+mdgst.String(), asAdmin, nil)
	if err := json.Unmarshal(body, &rep); err != nil || rep.Override == nil || len(rep.Blobs) != 4 {
		t.Fatalf("verdict report: %s", body)
	}

	resp, body = f.req(t, "DELETE", "/admin/api/overrides?subject="+url.QueryEscape(mdgst.String()), asAdmin, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), mdgst.String()) {
		t.Fatalf("remove: %d %s", resp.StatusCode, body)
	}
	if list, _ := f.store.Overrides(context.Background()); len(list) != 0 {
		t.Fatalf("overrides left: %+v", list)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/miner/manifests/1"); resp.StatusCode != 403 {
		t.Fatalf("pull after removing the allow: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/miner/blobs/"+bad.String()); resp.StatusCode != 403 {
		t.Fatalf("layer after removing the allow: %d", resp.StatusCode)
	}
}

// The stream announces itself and then each decision.
func TestAdminStream(t *testing.T) {
	f := newAdminFixture(t)
	f.hub.Push(t, "library/clean", "1", testregistry.CleanImage("stream"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"/admin/api/stream", nil)
	req.Header.Set("Authorization", "Bearer "+testReadOnlyToken)
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func(event string) string {
		t.Helper()
		for lines.Scan() {
			if lines.Text() == "event: "+event && lines.Scan() {
				return lines.Text()
			}
		}
		t.Fatalf("stream ended before %q: %v", event, lines.Err())
		return ""
	}
	next("hello")
	if r, body := f.do(t, "GET", "/v2/library/clean/manifests/1"); r.StatusCode != 200 {
		t.Fatalf("pull: %d %s", r.StatusCode, body)
	}
	data := next("pull")
	var ev events.Event
	if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &ev); err != nil || ev.Image != "docker.io/library/clean:1" || ev.Decision != verdict.Allowed {
		t.Fatalf("pull event %q: %v", data, err)
	}
}

// The page and its live fragment render what the API says, and a new
// server reloads recent decisions from the audit log.
func TestAdminPageAndReload(t *testing.T) {
	f := newAdminFixture(t)
	f.hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))
	if resp, _ := f.do(t, "GET", "/v2/someone/miner/manifests/1"); resp.StatusCode != 403 {
		t.Fatal("not blocked")
	}
	auth := "basic:carol:" + testReadOnlyToken
	resp, body := f.req(t, "GET", "/admin/live", auth, nil)
	for _, want := range []string{"docker.io/someone/miner:1", "/usr/bin/kworker", "MinerXMRig"} {
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("live fragment lacks %q", want)
		}
	}
	if strings.Contains(string(body), "Allow…") {
		t.Error("the read-only page offers to allow")
	}
	resp, _ = f.req(t, "GET", "/admin/static/admin.js", auth, nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("admin.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// A second server on the same audit log starts with the refusal.
	srv2, err := New(Options{Options: gate.Options{Upstreams: f.srv.opts.Upstreams, Blobs: f.blobs, Verdicts: f.store, Scanner: f.srv.gate.Scanner(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Admin: AdminOptions{Audit: f.audit}})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv2.live.BlockedImages(); len(got) != 1 || got[0].Image != "docker.io/someone/miner:1" {
		t.Fatalf("reloaded blocked list: %+v", got)
	}
}

func TestAdminMetrics(t *testing.T) {
	f := newAdminFixture(t)
	_, body := f.do(t, "GET", "/metrics")
	for _, want := range []string{"pullgate_upstream_ratelimit_remaining{upstream=\"docker.io\"}", "pullgate_scan_queue_depth", "pullgate_scan_workers_busy"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	f.req(t, "GET", "/admin/api/verdicts/sha256:"+strings.Repeat("a", 64), "bearer:"+testAdminToken, nil)
	_, body = f.do(t, "GET", "/metrics")
	if !strings.Contains(string(body), `route="admin-api-verdicts"`) || strings.Contains(string(body), "aaaaaaaa") {
		t.Error("admin API requests are not labelled by endpoint alone")
	}
}

// With a separate listener, the main one has no /admin.
func TestAdminSeparateListener(t *testing.T) {
	f := newAdminFixture(t, func(o *Options) { o.Admin.Separate = true })
	if resp, _ := f.req(t, "GET", "/admin/api/status", "bearer:"+testAdminToken, nil); resp.StatusCode != 404 {
		t.Fatalf("main listener serves /admin: %d", resp.StatusCode)
	}
	rec := newRecorder()
	req, _ := http.NewRequest("GET", "/admin/api/status", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	f.srv.AdminHandler().ServeHTTP(rec, req)
	if rec.code != 200 || !strings.Contains(rec.body.String(), `"ruleset_id"`) {
		t.Fatalf("admin handler: %d %s", rec.code, rec.body.String())
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}, code: 200} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(c int)           { r.code = c }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// The server says at start what it runs without: an event bus (the page
// shows this replica's decisions only) and an audit log.
func TestStartSaysWhatItRunsWithout(t *testing.T) {
	const noBus, noAudit = "running without an event bus", "running without an audit log"
	f := newAdminFixture(t) // an audit log, no bus
	if logs := f.logs.String(); !strings.Contains(logs, noBus) || strings.Contains(logs, noAudit) {
		t.Errorf("with an audit log and no bus, the start logs:\n%s", logs)
	}
	var logs testsync.Buffer
	newFixture(t, func(o *Options, _ *scanner.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if !strings.Contains(logs.String(), noBus) || !strings.Contains(logs.String(), noAudit) {
		t.Errorf("with neither, the start logs:\n%s", logs.String())
	}
}
