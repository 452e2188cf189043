package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// webhookReceiver fails its first `failures` deliveries with 503, then
// keeps what it gets.
type webhookReceiver struct {
	mu       sync.Mutex
	failures int
	attempts int
	got      []receivedAlert
}

type receivedAlert struct {
	body               []byte
	signature, event   string
	delivery, userAgnt string
}

func (rc *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	if rc.attempts <= rc.failures {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	rc.got = append(rc.got, receivedAlert{body: body, signature: r.Header.Get(WebhookSignatureHeader),
		event: r.Header.Get(WebhookEventHeader), delivery: r.Header.Get(WebhookDeliveryHeader), userAgnt: r.UserAgent()})
}

func (rc *webhookReceiver) snapshot() (int, []receivedAlert) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.attempts, append([]receivedAlert(nil), rc.got...)
}

// A block is alerted with a valid signature, retried after a failure, and
// the pull is answered without waiting for the receiver.
func TestWebhookOnBlockSignedAndRetried(t *testing.T) {
	rc := &webhookReceiver{failures: 1}
	recv := httptest.NewServer(rc)
	defer recv.Close()
	const secret = "webhook-secret-for-tests"
	f := newAdminFixture(t, func(o *Options) {
		o.Admin.Webhook = WebhookOptions{URL: recv.URL + "/hook", Secret: secret, Backoff: 20 * time.Millisecond}
	})
	mdgst := f.hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))
	bad := digest.FromBytes(testregistry.MinerImage("miner").Layers[2])
	if resp, _ := f.do(t, "GET", "/v2/someone/miner/manifests/1"); resp.StatusCode != 403 {
		t.Fatalf("miner pull: %d", resp.StatusCode)
	}
	testsync.WaitFor(t, 10*time.Second, "the alert to be delivered", func() bool {
		_, got := rc.snapshot()
		return len(got) == 1
	})
	attempts, got := rc.snapshot()
	if attempts != 2 {
		t.Errorf("%d attempts, want 2 (one failure, one retry)", attempts)
	}
	a := got[0]
	if !VerifyWebhook(secret, a.body, a.signature) {
		t.Fatalf("signature %q does not verify", a.signature)
	}
	if VerifyWebhook("another-secret", a.body, a.signature) {
		t.Fatal("signature verifies under another secret")
	}
	var p webhookPayload
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatal(err)
	}
	if a.event != "block" || p.Type != "block" || p.Digest != mdgst || p.Image != "docker.io/someone/miner:1" || a.delivery != p.ID || p.ID == "" ||
		len(p.Findings) == 0 || p.Findings[0].Layer != bad || p.Findings[0].Path != "/usr/bin/kworker" {
		t.Fatalf("alert: event %q, payload %+v", a.event, p)
	}
	_, body := f.do(t, "GET", "/metrics")
	for _, want := range []string{`pullgate_webhook_deliveries_total{result="delivered"} 1`, `pullgate_webhook_deliveries_total{result="retried"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestWebhookNeedsSecret(t *testing.T) {
	if _, err := newWebhook(WebhookOptions{URL: "http://127.0.0.1:1/"}, "", nil, nil); err == nil {
		t.Fatal("accepted a webhook without a secret")
	}
	if _, err := newWebhook(WebhookOptions{URL: "file:///etc/passwd", Secret: "s"}, "", nil, nil); err == nil {
		t.Fatal("accepted a non-http webhook URL")
	}
}

// An alert still waiting for a retry at shutdown is kept in the spool and
// sent at the next start, with its delivery id and a valid signature; the
// spool is then empty.
func TestWebhookKeepsUndeliveredAlertsForTheNextStart(t *testing.T) {
	const secret = "webhook-secret-for-tests"
	spool := t.TempDir()
	down := &webhookReceiver{failures: 1 << 30}
	recvDown := httptest.NewServer(down)
	defer recvDown.Close()
	logs := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newMetrics(prometheus.NewRegistry())

	w, err := newWebhook(WebhookOptions{URL: recvDown.URL, Secret: secret, Backoff: time.Hour, SpoolDir: spool}, "test", logs, m)
	if err != nil {
		t.Fatal(err)
	}
	alert := webhookPayload{Type: "block", Image: "docker.io/someone/miner:1", Digest: digest.FromString("m"), Reason: "blocked"}
	w.send(alert)
	testsync.WaitFor(t, 10*time.Second, "the first attempt", func() bool { n, _ := down.snapshot(); return n == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.close(ctx)
	if files, _ := filepath.Glob(filepath.Join(spool, spoolPrefix+"*")); len(files) != 1 {
		t.Fatalf("spool files after shutdown: %v", files)
	}

	up := &webhookReceiver{}
	recvUp := httptest.NewServer(up)
	defer recvUp.Close()
	w2, err := newWebhook(WebhookOptions{URL: recvUp.URL, Secret: secret, SpoolDir: spool}, "test", logs, m)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.close(ctx)
	testsync.WaitFor(t, 10*time.Second, "the kept alert to be delivered", func() bool { _, got := up.snapshot(); return len(got) == 1 })
	_, got := up.snapshot()
	var p webhookPayload
	if err := json.Unmarshal(got[0].body, &p); err != nil {
		t.Fatal(err)
	}
	if !VerifyWebhook(secret, got[0].body, got[0].signature) || p.Image != alert.Image || p.ID == "" || got[0].delivery != p.ID {
		t.Fatalf("resent alert: %+v, delivery %q, signature ok %v", p, got[0].delivery, VerifyWebhook(secret, got[0].body, got[0].signature))
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "*")); len(files) != 0 {
		t.Fatalf("spool not emptied: %v", files)
	}
}
