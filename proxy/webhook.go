package proxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// WebhookOptions configure the alert sent on each block. Zero values take
// the defaults documented on each field.
type WebhookOptions struct {
	// URL receives a POST with a JSON body for each block and each
	// retroactive block. Empty: no alerts.
	URL string
	// Secret keys the HMAC-SHA256 of the body, sent as
	// "X-Pullgate-Signature: sha256=<hex>". Required with URL.
	Secret string
	// Attempts per alert before it is given up. Default 6.
	Attempts int
	// Backoff is the wait before the first retry; it doubles each time, up
	// to a minute. Default 1s.
	Backoff time.Duration
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration
	// Client sends the requests; nil: a plain http.Client.
	Client *http.Client
	// SpoolDir keeps the alerts still undelivered at shutdown (queued, or
	// between retries), to be sent at the next start, by this process or
	// by any replica sharing the directory. Each keeps its delivery id, so
	// a receiver can tell a resent alert from a new one. Empty: such
	// alerts are lost, and logged.
	SpoolDir string
}

// Webhook headers.
const (
	WebhookSignatureHeader = "X-Pullgate-Signature"
	WebhookEventHeader     = "X-Pullgate-Event"
	WebhookDeliveryHeader  = "X-Pullgate-Delivery"
)

// SignWebhook returns the signature header value for body:
// "sha256=" and the hex HMAC-SHA256 of body keyed by secret.
func SignWebhook(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifyWebhook checks a signature header against body in constant time.
func VerifyWebhook(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(SignWebhook(secret, body)), []byte(signature))
}

// webhookPayload is the JSON body of an alert.
type webhookPayload struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"` // block or retroactive_block
	Time      time.Time         `json:"time"`
	Image     string            `json:"image,omitempty"`
	Digest    digest.Digest     `json:"digest"`
	Client    string            `json:"client,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Reason    string            `json:"reason"`
	Findings  []storage.Finding `json:"findings,omitempty"`
	Version   string            `json:"pullgate_version"`
}

// webhookQueue bounds the alerts waiting for delivery; webhookParallel
// bounds deliveries in flight, so a dead receiver ties up at most that many
// goroutines while the rest wait their turn.
const (
	webhookQueue    = 1000
	webhookParallel = 4
)

// webhook delivers alerts in the background. Its methods do nothing when
// no URL is configured.
type webhook struct {
	opts    WebhookOptions
	host    string // for logs: the URL may carry credentials
	version string
	logger  *slog.Logger
	metrics *metrics

	q        chan webhookPayload
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu     sync.Mutex
	unsent []webhookPayload // interrupted by shutdown between attempts
}

func newWebhook(o WebhookOptions, version string, logger *slog.Logger, m *metrics) (*webhook, error) {
	w := &webhook{opts: o, version: version, logger: logger, metrics: m, stop: make(chan struct{})}
	if o.URL == "" {
		return w, nil
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("webhook: URL must be an absolute http or https URL")
	}
	if o.Secret == "" {
		return nil, errors.New("webhook: a secret is required to sign alerts")
	}
	w.host = u.Host
	if w.opts.Attempts <= 0 {
		w.opts.Attempts = 6
	}
	if w.opts.Backoff <= 0 {
		w.opts.Backoff = time.Second
	}
	if w.opts.Timeout <= 0 {
		w.opts.Timeout = 10 * time.Second
	}
	if w.opts.Client == nil {
		w.opts.Client = &http.Client{}
	}
	w.q = make(chan webhookPayload, webhookQueue)
	for i := 0; i < webhookParallel; i++ {
		w.wg.Add(1)
		go w.run()
	}
	if o.SpoolDir != "" {
		spooled, err := w.unspool()
		if err != nil {
			// The alerts stay in their file for the next start.
			logger.Error("webhook: read alerts kept at the last shutdown", "err", err)
		}
		if len(spooled) > 0 {
			logger.Info("webhook: sending alerts kept at the last shutdown", "count", len(spooled))
		}
		for _, p := range spooled {
			select {
			case w.q <- p:
			default: // more than the queue holds: kept for the next start
				w.keep(p)
			}
		}
	}
	return w, nil
}

func (w *webhook) configured() bool { return w.q != nil }

// send queues an alert; a full queue drops it (counted and logged).
func (w *webhook) send(p webhookPayload) {
	if !w.configured() {
		return
	}
	p.ID = newID()
	p.Version = w.version
	select {
	case w.q <- p:
	default:
		w.metrics.webhook("dropped")
		w.logger.Error("webhook queue full; alert dropped", "image", p.Image, "digest", p.Digest.String())
	}
}

func (w *webhook) run() {
	defer w.wg.Done()
	for {
		select {
		case p := <-w.q:
			w.deliver(p)
		case <-w.stop:
			return
		}
	}
}

// deliver posts p until the receiver answers 2xx, backing off between
// attempts, or gives up after the configured attempts or at shutdown.
func (w *webhook) deliver(p webhookPayload) {
	body, err := json.Marshal(p)
	if err != nil {
		w.logger.Error("webhook: encode alert", "err", err)
		return
	}
	delay := w.opts.Backoff
	for attempt := 1; ; attempt++ {
		err := w.post(p, body)
		if err == nil {
			w.metrics.webhook("delivered")
			return
		}
		if attempt >= w.opts.Attempts {
			w.metrics.webhook("failed")
			w.logger.Error("webhook: alert not delivered", "upstream", w.host, "digest", p.Digest.String(), "attempts", attempt, "err", err)
			return
		}
		w.metrics.webhook("retried")
		w.logger.Warn("webhook: delivery failed; retrying", "upstream", w.host, "digest", p.Digest.String(), "attempt", attempt, "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-w.stop:
			t.Stop()
			w.keep(p)
			return
		}
		delay = min(2*delay, time.Minute)
	}
}

func (w *webhook) post(p webhookPayload, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("build request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pullgate/"+w.version)
	req.Header.Set(WebhookEventHeader, p.Type)
	req.Header.Set(WebhookDeliveryHeader, p.ID)
	req.Header.Set(WebhookSignatureHeader, SignWebhook(w.opts.Secret, body))
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may carry credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post to %s: %w", w.host, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", w.host, resp.Status)
	}
	return nil
}

// keep sets aside an alert that shutdown interrupted.
func (w *webhook) keep(p webhookPayload) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unsent = append(w.unsent, p)
}

// close stops the deliveries, waiting until ctx ends for those in flight
// to finish their current attempt. Alerts still queued or waiting for a
// retry go to the spool for the next start (or are logged as lost).
func (w *webhook) close(ctx context.Context) {
	if !w.configured() {
		return
	}
	w.stopOnce.Do(func() { close(w.stop) })
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	w.mu.Lock()
	unsent := w.unsent
	w.unsent = nil
	w.mu.Unlock()
	for len(w.q) > 0 {
		unsent = append(unsent, <-w.q)
	}
	if len(unsent) == 0 {
		return
	}
	if w.opts.SpoolDir == "" {
		w.logger.Warn("webhook: alerts not sent at shutdown", "count", len(unsent))
		return
	}
	if err := w.spool(unsent); err != nil {
		w.logger.Error("webhook: alerts not sent at shutdown and not kept", "count", len(unsent), "err", err)
		return
	}
	for range unsent {
		w.metrics.webhook("kept")
	}
	w.logger.Info("webhook: alerts kept for the next start", "count", len(unsent))
}

// Spool files: one per shutdown, JSON lines of alerts. A starting process
// claims each by renaming it (only one rename of a file succeeds, so two
// replicas starting together do not both send it), then reads and removes
// it.
const (
	spoolPrefix  = "webhook-unsent-"
	spoolClaimed = ".claimed"
)

// spool writes the alerts to a new file in SpoolDir, whole or not at all.
func (w *webhook) spool(alerts []webhookPayload) error {
	if err := os.MkdirAll(w.opts.SpoolDir, 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, p := range alerts {
		if err := enc.Encode(p); err != nil {
			return err
		}
	}
	name := filepath.Join(w.opts.SpoolDir, spoolPrefix+newID()+".jsonl")
	tmp, err := os.CreateTemp(w.opts.SpoolDir, ".webhook-spool-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// unspool claims, reads and removes the spool files in SpoolDir. A file
// that cannot be read is left claimed, for an operator to look at.
func (w *webhook) unspool() ([]webhookPayload, error) {
	names, err := filepath.Glob(filepath.Join(w.opts.SpoolDir, spoolPrefix+"*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []webhookPayload
	var errs []error
	for _, name := range names {
		claimed := name + spoolClaimed + "-" + newID()
		if err := os.Rename(name, claimed); err != nil {
			continue // another process took it
		}
		alerts, err := readSpool(claimed)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", claimed, err))
			continue
		}
		out = append(out, alerts...)
		_ = os.Remove(claimed)
	}
	return out, errors.Join(errs...)
}

func readSpool(path string) ([]webhookPayload, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []webhookPayload
	dec := json.NewDecoder(io.LimitReader(f, 64<<20))
	for {
		var p webhookPayload
		if err := dec.Decode(&p); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
