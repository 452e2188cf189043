package events

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/internal/verdict"
)

func TestWebhookNeedsSecret(t *testing.T) {
	if _, err := NewWebhook(WebhookOptions{URL: "http://127.0.0.1:1/"}, "", nil, nil); err == nil {
		t.Fatal("accepted a webhook without a secret")
	}
	if _, err := NewWebhook(WebhookOptions{URL: "file:///etc/passwd", Secret: "s"}, "", nil, nil); err == nil {
		t.Fatal("accepted a non-http webhook URL")
	}
}

// delivery is one request a test receiver got.
type delivery struct {
	body                []byte
	signature, delivery string
}

// receiver answers status to every request and hands each to the channel
// it returns.
func receiver(t *testing.T, status int) (string, <-chan delivery) {
	t.Helper()
	ch := make(chan delivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(status)
		ch <- delivery{body: body, signature: r.Header.Get(WebhookSignatureHeader), delivery: r.Header.Get(WebhookDeliveryHeader)}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func next(t *testing.T, ch <-chan delivery, what string) delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return delivery{}
	}
}

// An alert still waiting for a retry at shutdown is kept in the spool and
// sent at the next start, with its delivery id and a valid signature; the
// spool is then empty.
func TestWebhookKeepsUndeliveredAlertsForTheNextStart(t *testing.T) {
	const secret = "webhook-secret-for-tests"
	spool := t.TempDir()
	downURL, down := receiver(t, http.StatusServiceUnavailable)
	logs := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMetrics(prometheus.NewRegistry())

	w, err := NewWebhook(WebhookOptions{URL: downURL, Secret: secret, Backoff: time.Hour, SpoolDir: spool}, "test", logs, m)
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Decision: verdict.Blocked, Image: "docker.io/someone/miner:1", Digest: digest.FromString("m"), Reason: "blocked"}
	w.Emit(Event{Decision: verdict.Allowed, Image: "docker.io/library/clean:1"}) // no alert
	w.Emit(ev)
	first := next(t, down, "the first attempt")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.Close(ctx)
	if files, _ := filepath.Glob(filepath.Join(spool, spoolPrefix+"*")); len(files) != 1 {
		t.Fatalf("spool files after shutdown: %v", files)
	}

	upURL, up := receiver(t, http.StatusOK)
	w2, err := NewWebhook(WebhookOptions{URL: upURL, Secret: secret, SpoolDir: spool}, "test", logs, m)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close(ctx)
	got := next(t, up, "the kept alert")
	var p AlertBody
	if err := json.Unmarshal(got.body, &p); err != nil {
		t.Fatal(err)
	}
	if !VerifyWebhook(secret, got.body, got.signature) || p.Image != ev.Image || p.Type != AlertBlock || p.ID == "" ||
		got.delivery != p.ID || first.delivery != p.ID {
		t.Fatalf("resent alert: %+v, delivery %q (first %q), signature ok %v", p, got.delivery, first.delivery, VerifyWebhook(secret, got.body, got.signature))
	}
	if files, _ := filepath.Glob(filepath.Join(spool, "*")); len(files) != 0 {
		t.Fatalf("spool not emptied: %v", files)
	}
	select {
	case d := <-up:
		t.Fatalf("a second alert was sent: %s", d.body)
	default:
	}
}
