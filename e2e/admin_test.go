package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/storage"
)

// alertReceiver answers 503 to the first alert and keeps the rest.
type alertReceiver struct {
	mu       sync.Mutex
	attempts int
	bodies   [][]byte
	sigs     []string
}

func (a *alertReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempts++
	if a.attempts == 1 {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	a.bodies = append(a.bodies, body)
	a.sigs = append(a.sigs, r.Header.Get(events.WebhookSignatureHeader))
}

// TestAdminPageInBrowser drives the admin page in a real headless Chromium
// while a real dockerd pulls through the pullgate binary: the refusal
// appears on the open page without a reload, with the image, the file and
// the rule; allowing the image with the page's form lets the next pull
// through and is in the audit log; the block's alert reaches a receiver,
// signed, after one failed delivery. It writes docs/img/admin.png.
func TestAdminPageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is required (apt-get install chromium; make deps): %v", err)
	}
	const (
		token  = "e2e-admin-token-0123456789"
		secret = "e2e-webhook-secret"
	)
	hub := testregistry.Start(t)
	img := testregistry.MinerImage("miner")
	mdgst := hub.Push(t, "someone/miner", "1", img)
	bad := digest.FromBytes(img.Layers[2])
	recv := &alertReceiver{}
	hook := httptest.NewServer(recv)
	defer hook.Close()
	// Secrets through the environment, as an operator should pass them.
	t.Setenv("PULLGATE_ADMIN_TOKEN", token)
	t.Setenv("PULLGATE_WEBHOOK_SECRET", secret)
	pg := StartPullgate(t, PullgateOptions{
		Upstreams: map[string]string{"docker.io": hub.URL()},
		Extra:     []string{"--webhook-url", hook.URL + "/alerts"},
	})
	d := SharedDockerd(t, DockerdOptions{})

	var chromiumLog testsync.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chromium output (last 40 lines):\n%s", tail(chromiumLog.String(), 40))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		chromedp.CombinedOutput(&chromiumLog),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("oncall:"+token))
	// The page's own requests (fetch, EventSource, the form) carry the
	// login, as after a browser's basic auth prompt.
	setAuth := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": basic}})
		return chromedp.Void{}, err
	}
	// The first Run starts the browser, for as long as ctx; each later
	// step gets its own deadline, so a page that is not as expected fails
	// quickly.
	if err := chromedp.Do(browser, setAuth); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	step := func() context.Context {
		c, cancel := context.WithTimeout(browser, 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	t.Cleanup(func() {
		if t.Failed() {
			body, _ := chromedp.Run(step(), chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Logf("the page said:\n%s", truncateText(body, 3000))
		}
	})
	err = chromedp.Do(step(),
		chromedp.Navigate(pg.URL()+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS("#conn.ok")),
	)
	if err != nil {
		t.Fatalf("open the admin page: %v", err)
	}
	// A mark that a reload would wipe.
	if _, err := chromedp.Run(browser, chromedp.Evaluate[string](`window.pullgateNoReload = "still here"`)); err != nil {
		t.Fatal(err)
	}

	ref := pg.Addr() + "/someone/miner:1"
	if out, err := d.Pull(pullCtx(t), ref); err == nil {
		t.Fatalf("the miner image was pulled:\n%s", out)
	}

	if err := chromedp.Do(step(), chromedp.WaitVisible(chromedp.CSS("#blocked article.blocked"))); err != nil {
		t.Fatalf("wait for the block on the page: %v", err)
	}
	blocked := text(t, browser, "#blocked")
	for _, want := range []string{"docker.io/someone/miner", mdgst.String(), "/usr/bin/kworker", "MinerXMRig"} {
		if !strings.Contains(blocked, want) {
			t.Errorf("the blocked section lacks %q:\n%s", want, blocked)
		}
	}
	if mark, err := chromedp.Run(browser, chromedp.Evaluate[string](`window.pullgateNoReload || ""`)); err != nil || mark != "still here" {
		t.Fatalf("the page was reloaded (mark %q, %v): the block must appear by live update", mark, err)
	}
	writeScreenshot(t, browser)

	// Allow it from the page: the image's blocked entry's link fills in
	// the form. (dockerd streams by default: its retries of the refused
	// layer are entries of their own, newer than the image's.)
	imageEntry := fmt.Sprintf(`//*[@id="blocked"]//article[contains(@class,"blocked")][contains(., %q)]//a[contains(@class,"button")]`, mdgst.String())
	err = chromedp.Do(step(),
		chromedp.Click(chromedp.Search(imageEntry)),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
	)
	if err != nil {
		t.Fatalf("follow Allow…: %v", err)
	}
	subject, err := chromedp.Run(browser, chromedp.Value(chromedp.CSS("#subject")))
	if err != nil || subject != mdgst.String() {
		t.Fatalf("the form's subject is %q (%v), want %s", subject, err, mdgst)
	}
	err = chromedp.Do(step(),
		chromedp.SendKeys(chromedp.CSS("#reason"), "reviewed: test fixture, not a real miner"),
		chromedp.Click(chromedp.CSS("#override-submit")),
		chromedp.WaitVisible(chromedp.CSS("#form-done")),
	)
	if err != nil {
		t.Fatalf("submit the override: %v", err)
	}
	if done := text(t, browser, "#form-done"); !strings.Contains(done, "allow override saved for "+mdgst.String()) {
		t.Fatalf("form result %q", done)
	}

	if out, err := d.Pull(pullCtx(t), ref); err != nil {
		t.Fatalf("pull after the override: %v\n%s", err, out)
	}

	// The override is in the audit log: on the page, and in the JSON
	// lines under the data dir.
	if auditText := text(t, browser, "#audit"); !strings.Contains(auditText, mdgst.String()) || !strings.Contains(auditText, "admin:oncall") {
		t.Errorf("the page's audit section lacks the override:\n%s", auditText)
	}
	records := auditFile(t, pg.DataDir())
	// An image allow is one record: its layer is served through it.
	var overrides, layerOverrides, allowedPulls int
	for _, r := range records {
		if r.Kind == storage.AuditOverride && r.Subject == mdgst.String() && r.Action == "allow" && r.Actor == "admin:oncall" {
			overrides++
		}
		if r.Kind == storage.AuditOverride && r.Subject == bad.String() {
			layerOverrides++
		}
		if r.Kind == storage.AuditPull && r.Digest == mdgst && r.Decision == verdict.Overridden {
			allowedPulls++
		}
	}
	if overrides != 1 || layerOverrides != 0 || allowedPulls == 0 {
		t.Errorf("audit files: %d override records of the image (want 1), %d of its layer (want 0), %d pulls allowed by override", overrides, layerOverrides, allowedPulls)
	}

	// The image's alert (a streamed pull also alerts on its refused layer).
	imageAlert := func() int {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		for i, b := range recv.bodies {
			if strings.Contains(string(b), mdgst.String()) {
				return i
			}
		}
		return -1
	}
	testsync.WaitFor(t, 30*time.Second, "the image's block alert", func() bool { return imageAlert() >= 0 })
	i := imageAlert()
	recv.mu.Lock()
	body, sig, attempts := recv.bodies[i], recv.sigs[i], recv.attempts
	recv.mu.Unlock()
	if !events.VerifyWebhook(secret, body, sig) {
		t.Errorf("alert signature %q does not verify", sig)
	}
	if attempts < 2 || !strings.Contains(string(body), mdgst.String()) {
		t.Errorf("alert after %d attempts: %s", attempts, body)
	}
	if strings.Contains(pg.Log(), token) || strings.Contains(pg.Log(), secret) {
		t.Error("a token or secret is in pullgate's log")
	}
}

// text returns the visible text of the first element sel matches.
func text(t *testing.T, browser context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// auditFile reads the audit log's files under the data dir: the pull
// records and the override changes, kept apart.
func auditFile(t *testing.T, dataDir string) []storage.AuditRecord {
	t.Helper()
	var out []storage.AuditRecord
	pulls := filepath.Join(dataDir, "audit.jsonl")
	for _, name := range []string{pulls, storage.OverridesPath(pulls)} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var r storage.AuditRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s line %q: %v", name, line, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// writeScreenshot saves the page as docs/img/admin.png for the README.
func writeScreenshot(t *testing.T, browser context.Context) {
	t.Helper()
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "img", "admin.png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot written to %s", path)
}
