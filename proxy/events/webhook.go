package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
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

// AlertBody is the JSON body of an alert. Its fields are the webhook's
// contract with receivers and do not change; it is made from the Event by
// alertOf, the one place where an Event becomes an alert.
type AlertBody struct {
	ID        string            `json:"id"`
	Type      AlertType         `json:"type"`
	Time      time.Time         `json:"time"`
	Image     string            `json:"image,omitempty"`
	Digest    digest.Digest     `json:"digest"`
	Client    string            `json:"client,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Reason    string            `json:"reason"`
	Findings  []verdict.Finding `json:"findings,omitempty"`
	Version   string            `json:"pullgate_version"`
}

// AlertType is the kind of an alert: the word receivers read in its
// "type" field and in the X-Pullgate-Event header. The zero value sends
// no alert.
type AlertType uint8

const (
	AlertBlock            AlertType = iota + 1 // a pull refused for what a scan found
	AlertRetroactiveBlock                      // a stored blob refused under new rules
)

// alertOn maps the decisions that send an alert to the alert's type.
var alertOn = map[verdict.Outcome]AlertType{
	verdict.Blocked:          AlertBlock,
	verdict.RetroactiveBlock: AlertRetroactiveBlock,
}

var alertNames = [...]string{AlertBlock: "block", AlertRetroactiveBlock: "retroactive_block"}

func (t AlertType) String() string {
	if t == 0 || int(t) >= len(alertNames) {
		return ""
	}
	return alertNames[t]
}

// MarshalText writes the alert type's word.
func (t AlertType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads an alert type's word (from a spooled alert).
func (t *AlertType) UnmarshalText(b []byte) error {
	for i, n := range alertNames {
		if n != "" && n == string(b) {
			*t = AlertType(i)
			return nil
		}
	}
	return fmt.Errorf("unknown alert type %q", b)
}

// alertOf is the alert ev sends, and whether it sends one.
func alertOf(ev Event) (AlertBody, bool) {
	t, ok := alertOn[ev.Decision]
	if !ok {
		return AlertBody{}, false
	}
	return AlertBody{Type: t, Time: ev.Time, Image: ev.Image, Digest: ev.Digest, Client: ev.Client,
		UserAgent: ev.UserAgent, Reason: ev.Reason, Findings: ev.Findings}, true
}

// webhookQueue bounds the alerts waiting for delivery; webhookParallel
// bounds deliveries in flight, so a dead receiver ties up at most that many
// goroutines while the rest wait their turn.
const (
	webhookQueue    = 1000
	webhookParallel = 4
)

// Webhook is the sink that sends an alert for each block and each
// retroactive block, signed, in the background. Its methods do nothing
// when no URL is configured.
type Webhook struct {
	opts    WebhookOptions
	host    string // for logs: the URL may carry credentials
	version string
	logger  *slog.Logger
	metrics *Metrics

	q        chan AlertBody
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu     sync.Mutex
	unsent []AlertBody // interrupted by shutdown between attempts
}

// NewWebhook checks o and starts the deliveries, first of the alerts kept
// at the last shutdown.
func NewWebhook(o WebhookOptions, version string, logger *slog.Logger, m *Metrics) (*Webhook, error) {
	w := &Webhook{opts: o, version: version, logger: logger, metrics: m, stop: make(chan struct{})}
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
	w.q = make(chan AlertBody, webhookQueue)
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

// Configured reports whether alerts are sent.
func (w *Webhook) Configured() bool { return w.q != nil }

// Emit sends the alert of a block or a retroactive block.
func (w *Webhook) Emit(ev Event) {
	if p, ok := alertOf(ev); ok {
		w.send(p)
	}
}

// send queues an alert; a full queue drops it (counted and logged).
func (w *Webhook) send(p AlertBody) {
	if !w.Configured() {
		return
	}
	p.ID = newID()
	p.Version = w.version
	select {
	case w.q <- p:
	default:
		w.metrics.Webhook("dropped")
		w.logger.Error("webhook queue full; alert dropped", "image", p.Image, "digest", p.Digest.String())
	}
}

func (w *Webhook) run() {
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
func (w *Webhook) deliver(p AlertBody) {
	body, err := json.Marshal(p)
	if err != nil {
		w.logger.Error("webhook: encode alert", "err", err)
		return
	}
	delay := w.opts.Backoff
	for attempt := 1; ; attempt++ {
		err := w.post(p, body)
		if err == nil {
			w.metrics.Webhook("delivered")
			return
		}
		if attempt >= w.opts.Attempts {
			w.metrics.Webhook("failed")
			w.logger.Error("webhook: alert not delivered", "upstream", w.host, "digest", p.Digest.String(), "attempts", attempt, "err", err)
			return
		}
		w.metrics.Webhook("retried")
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

func (w *Webhook) post(p AlertBody, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("build request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pullgate/"+w.version)
	req.Header.Set(WebhookEventHeader, p.Type.String())
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
func (w *Webhook) keep(p AlertBody) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unsent = append(w.unsent, p)
}

// Close stops the deliveries, waiting until ctx ends for those in flight
// to finish their current attempt. Alerts still queued or waiting for a
// retry go to the spool for the next start (or are logged as lost).
func (w *Webhook) Close(ctx context.Context) {
	if !w.Configured() {
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
		w.metrics.Webhook("kept")
	}
	w.logger.Info("webhook: alerts kept for the next start", "count", len(unsent))
}
