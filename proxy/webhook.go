package proxy

import "github.com/pullgate/pullgate/proxy/events"

// WebhookOptions configure the alert sent on each block (events.WebhookOptions).
type WebhookOptions = events.WebhookOptions

// Webhook headers, as receivers read them (events).
const (
	WebhookSignatureHeader = events.WebhookSignatureHeader
	WebhookEventHeader     = events.WebhookEventHeader
	WebhookDeliveryHeader  = events.WebhookDeliveryHeader
)

// SignWebhook returns the signature header value for body (events.SignWebhook).
func SignWebhook(secret string, body []byte) string { return events.SignWebhook(secret, body) }

// VerifyWebhook checks a signature header against body in constant time
// (events.VerifyWebhook).
func VerifyWebhook(secret string, body []byte, signature string) bool {
	return events.VerifyWebhook(secret, body, signature)
}
