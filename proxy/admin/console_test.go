package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/admin/admintest"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

const (
	testAdminToken    = admintest.AdminToken
	testReadOnlyToken = admintest.ReadOnlyToken
)

// fakeGate answers for a gate with nothing in flight and the image
// manifests the test puts in images.
type fakeGate struct {
	sc     *scanner.Scanner
	images map[digest.Digest][]gate.Ref
}

func (g *fakeGate) Scans() []gate.FlightInfo  { return nil }
func (g *fakeGate) Scanner() *scanner.Scanner { return g.sc }
func (g *fakeGate) ImageBlobs(_ context.Context, d digest.Digest) ([]gate.Ref, bool) {
	b, ok := g.images[d]
	return b, ok
}

// console is the admin page alone, mounted at /admin on a test server,
// over a real embedded store and a real audit log.
type console struct {
	url   string
	store storage.Store
	audit storage.AuditLog
	gate  *fakeGate
	live  *Live
	logs  *testsync.Buffer
}

func newConsole(t *testing.T, mods ...func(*Options)) *console {
	t.Helper()
	dir := t.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "verdicts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	audit, err := storage.OpenFileAuditLog(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	blobs, err := storage.NewInMemoryBlobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scanner.New(scanner.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	f := &console{store: store, audit: audit, gate: &fakeGate{sc: sc, images: map[digest.Digest][]gate.Ref{}},
		live: NewLive(), logs: &testsync.Buffer{}}
	o := Options{Token: testAdminToken, ReadOnlyToken: testReadOnlyToken, Gate: f.gate, Verdicts: store, Overrides: store,
		Blobs: blobs, Audit: audit, Metrics: events.NewMetrics(prometheus.NewRegistry()), Live: f.live,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, m := range mods {
		m(&o)
	}
	c := New(o)
	r := chi.NewRouter()
	r.Mount("/admin", c.Handler())
	ts := httptest.NewServer(r)
	t.Cleanup(ts.Close)
	t.Cleanup(c.StopStreams)
	t.Cleanup(func() {
		for _, tok := range []string{testAdminToken, testReadOnlyToken} {
			if strings.Contains(f.logs.String(), tok) {
				t.Errorf("a token appears in the logs")
			}
		}
	})
	f.url = ts.URL
	return f
}

// req sends an admin request (admintest.Request).
func (f *console) req(t *testing.T, method, path, auth string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return admintest.Request(t, nil, f.url, method, path, auth, body, hdr...)
}

// csrf reads the anti-forgery token from the page, as a browser would.
func (f *console) csrf(t *testing.T, auth string) string {
	t.Helper()
	return admintest.CSRF(t, nil, f.url, auth)
}

func overrideJSON(subject, action, reason string) io.Reader {
	b, _ := json.Marshal(OverrideRequest{Subject: subject, Action: action, Reason: reason})
	return bytes.NewReader(b)
}

func TestAdminAccessControl(t *testing.T) {
	f := newConsole(t)
	admin, ro := "bearer:"+testAdminToken, "bearer:"+testReadOnlyToken
	basicAdmin, basicRO := "basic:alice:"+testAdminToken, "basic:bob:"+testReadOnlyToken
	csrf := f.csrf(t, basicAdmin)
	roCSRF := f.csrf(t, basicRO)
	subject := digest.FromString("access-control").String()
	jsonCT := []string{"Content-Type", "application/json"}

	cases := []struct {
		name, method, path, auth string
		body                     func() io.Reader
		hdr                      []string
		want                     int
	}{
		{"no token", "GET", "/admin/api/status", "", nil, nil, 401},
		{"no token, page", "GET", "/admin/", "", nil, nil, 401},
		{"wrong bearer", "GET", "/admin/api/status", "bearer:not-the-token-at-all", nil, nil, 401},
		{"wrong basic password", "GET", "/admin/", "basic:alice:not-the-token-at-all", nil, nil, 401},
		{"token as basic user name", "GET", "/admin/", "basic:" + testAdminToken + ":", nil, nil, 401},
		{"admin bearer reads", "GET", "/admin/api/status", admin, nil, nil, 200},
		{"read-only bearer reads", "GET", "/admin/api/overrides", ro, nil, nil, 200},
		{"basic auth, any user, reads", "GET", "/admin/", basicRO, nil, nil, 200},
		{"static files need a login too", "GET", "/admin/static/admin.css", "", nil, nil, 401},
		{"read-only bearer writes", "POST", "/admin/api/overrides", ro, func() io.Reader { return overrideJSON(subject, "deny", "r") }, jsonCT, 403},
		{"read-only basic writes with its csrf", "POST", "/admin/api/overrides", basicRO, func() io.Reader { return overrideJSON(subject, "deny", "r") }, append([]string{"X-CSRF-Token", roCSRF}, jsonCT...), 403},
		{"read-only deletes", "DELETE", "/admin/api/overrides?subject=" + subject, ro, nil, nil, 403},
		{"basic admin without csrf", "POST", "/admin/api/overrides", basicAdmin, func() io.Reader { return overrideJSON(subject, "deny", "r") }, jsonCT, 403},
		{"basic admin with a wrong csrf", "POST", "/admin/api/overrides", basicAdmin, func() io.Reader { return overrideJSON(subject, "deny", "r") }, append([]string{"X-CSRF-Token", roCSRF}, jsonCT...), 403},
		{"basic admin form without csrf", "POST", "/admin/overrides", basicAdmin, func() io.Reader {
			return strings.NewReader(url.Values{"subject": {subject}, "action": {"deny"}, "reason": {"r"}}.Encode())
		}, []string{"Content-Type", "application/x-www-form-urlencoded"}, 403},
		{"basic admin from another origin", "POST", "/admin/api/overrides", basicAdmin, func() io.Reader { return overrideJSON(subject, "deny", "r") },
			append([]string{"X-CSRF-Token", csrf, "Origin", "https://evil.example"}, jsonCT...), 403},
		{"basic admin cross-site", "POST", "/admin/api/overrides", basicAdmin, func() io.Reader { return overrideJSON(subject, "deny", "r") },
			append([]string{"X-CSRF-Token", csrf, "Sec-Fetch-Site", "cross-site"}, jsonCT...), 403},
		{"missing reason", "POST", "/admin/api/overrides", admin, func() io.Reader { return overrideJSON(subject, "deny", " ") }, jsonCT, 400},
		{"a tag is not a subject", "POST", "/admin/api/overrides", admin, func() io.Reader { return overrideJSON("alpine:3.20", "deny", "r") }, jsonCT, 400},
		{"basic admin with csrf", "POST", "/admin/api/overrides", basicAdmin, func() io.Reader { return overrideJSON(subject, "deny", "r") }, append([]string{"X-CSRF-Token", csrf}, jsonCT...), 201},
		{"basic admin form with csrf", "POST", "/admin/overrides", basicAdmin, func() io.Reader {
			return strings.NewReader(url.Values{"csrf": {csrf}, "subject": {"someone/tool"}, "action": {"deny"}, "reason": {"r"}}.Encode())
		}, []string{"Content-Type", "application/x-www-form-urlencoded"}, 303},
		{"bearer admin needs no csrf", "DELETE", "/admin/api/overrides?subject=" + subject, admin, nil, nil, 200},
		{"removing nothing", "DELETE", "/admin/api/overrides?subject=" + subject, admin, nil, nil, 404},
	}
	for _, tc := range cases {
		var body io.Reader
		if tc.body != nil {
			body = tc.body()
		}
		resp, b := f.req(t, tc.method, tc.path, tc.auth, body, tc.hdr...)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %s %s = %d, want %d: %s", tc.name, tc.method, tc.path, resp.StatusCode, tc.want, storage.Clip(string(b), 200))
		}
		if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: 401 without a basic auth challenge", tc.name)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers missing: CSP %q", tc.name, csp)
		}
		for _, tok := range []string{testAdminToken, testReadOnlyToken} {
			if strings.Contains(string(b), tok) {
				t.Errorf("%s: the answer contains a token", tc.name)
			}
		}
	}
	o, err := f.store.Override(context.Background(), "docker.io/someone/tool")
	if err != nil || o.Action != storage.Deny || o.Actor != "admin:alice" {
		t.Errorf("the form's override: %+v, %v", o, err)
	}
	if !strings.Contains(f.logs.String(), "admin: authentication failed") {
		t.Error("failed logins are not logged")
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	f := newConsole(t, func(o *Options) { o.Token, o.ReadOnlyToken = "", "" })
	resp, body := f.req(t, "GET", "/admin/api/status", "bearer:anything-at-all-here", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "disabled") {
		t.Fatalf("no token configured: %d %s", resp.StatusCode, body)
	}
}

// A token that keeps failing is refused (429 with Retry-After) without
// locking out the good token from the same address (a reverse proxy); an
// address that keeps guessing is refused with any token.
func TestAdminLoginFailuresAreLimited(t *testing.T) {
	f := newConsole(t)
	for i := range maxTokenFailures {
		if resp, _ := f.req(t, "GET", "/admin/api/status", "bearer:stale-token-of-some-script", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, resp.StatusCode)
		}
	}
	resp, _ := f.req(t, "GET", "/admin/api/status", "bearer:stale-token-of-some-script", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the bad token after %d failures: %d, Retry-After %q", maxTokenFailures, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, _ := f.req(t, "GET", "/admin/api/status", "bearer:"+testAdminToken, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the good token from the same address: %d", resp.StatusCode)
	}
	// Guesses: a new token each time.
	for i := maxTokenFailures; i < maxAddressFailures; i++ {
		if resp, _ := f.req(t, "GET", "/admin/api/status", fmt.Sprintf("bearer:guess-%d", i), nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	// The address is now refused any token that does not start as a
	// configured one, the next guess included; the operator behind the
	// same address, whose token does, keeps working.
	resp, _ = f.req(t, "GET", "/admin/api/status", "bearer:guess-next", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a guess after %d failures from one address: %d", maxAddressFailures, resp.StatusCode)
	}
	if resp, _ := f.req(t, "GET", "/admin/api/status", "bearer:"+testAdminToken, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the good token from an address with %d failures: %d", maxAddressFailures, resp.StatusCode)
	}
	// A token that starts right and goes wrong later is checked, and
	// counted against its own key.
	wrong := testAdminToken[:tokenPrefix] + "-but-not-the-rest"
	if resp, _ := f.req(t, "GET", "/admin/api/status", "bearer:"+wrong, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a token with the right start and a wrong end: %d", resp.StatusCode)
	}
}
