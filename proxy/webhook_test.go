package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/events"
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
	rc.got = append(rc.got, receivedAlert{body: body, signature: r.Header.Get(events.WebhookSignatureHeader),
		event: r.Header.Get(events.WebhookEventHeader), delivery: r.Header.Get(events.WebhookDeliveryHeader), userAgnt: r.UserAgent()})
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
		o.Admin.Webhook = events.WebhookOptions{URL: recv.URL + "/hook", Secret: secret, Backoff: 20 * time.Millisecond}
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
	if !events.VerifyWebhook(secret, a.body, a.signature) {
		t.Fatalf("signature %q does not verify", a.signature)
	}
	if events.VerifyWebhook("another-secret", a.body, a.signature) {
		t.Fatal("signature verifies under another secret")
	}
	var p events.AlertBody
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatal(err)
	}
	if a.event != "block" || p.Type != events.AlertBlock || p.Digest != mdgst || p.Image != "docker.io/someone/miner:1" || a.delivery != p.ID || p.ID == "" ||
		len(p.Findings) == 0 || p.Findings[0].Layer != bad || p.Findings[0].Path != "/usr/bin/kworker" {
		t.Fatalf("alert: event %q, payload %+v", a.event, p)
	}
	// The delivery is counted once the receiver has answered, which may be
	// after the receiver recorded it.
	for _, want := range []string{`pullgate_webhook_deliveries_total{result="delivered"} 1`, `pullgate_webhook_deliveries_total{result="retried"} 1`} {
		testsync.WaitFor(t, 10*time.Second, "/metrics to show "+want, func() bool {
			_, body := f.do(t, "GET", "/metrics")
			return strings.Contains(string(body), want)
		})
	}
}
