package proxy

import (
	"context"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// Event is one decision pullgate made about a pull: the unit of its logs,
// metrics, audit log, admin page and alerts.
type Event struct {
	Time      time.Time         `json:"time"`
	Client    string            `json:"client"`
	UserAgent string            `json:"user_agent"`
	Image     string            `json:"image"`
	Digest    digest.Digest     `json:"digest"`
	Decision  string            `json:"decision"`
	Findings  []storage.Finding `json:"findings,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Latency   time.Duration     `json:"latency"` // nanoseconds
}

// event is Event under the name the handlers use.
type event = Event

// record logs one line per decision, with stable keys, and hands the event
// to the metrics, the admin page, the audit log and the alerts. None of
// them can hold up the pull: the audit log and the webhook are queued.
func (s *Server) record(ev event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	s.metrics.decision(ev)
	attrs := []any{
		slog.String("image", ev.Image),
		slog.String("digest", ev.Digest.String()),
		slog.String("decision", ev.Decision),
		slog.String("client", ev.Client),
		slog.String("user_agent", ev.UserAgent),
		slog.Duration("latency", ev.Latency),
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", ev.Reason))
	}
	for i, f := range ev.Findings {
		if i == 3 {
			break
		}
		attrs = append(attrs, slog.Group("finding", "rule", f.Rule, "layer", f.Layer.String(), "path", f.Path))
	}
	level := slog.LevelInfo
	if ev.Decision != "allowed" && ev.Decision != "index" {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "decision", attrs...)

	s.live.add(ev)
	s.audit.enqueue(auditOf(ev))
	if kind, ok := alertOn[ev.Decision]; ok {
		s.hook.send(webhookPayload{Type: kind, Time: ev.Time, Image: ev.Image, Digest: ev.Digest,
			Client: ev.Client, UserAgent: ev.UserAgent, Reason: ev.Reason, Findings: ev.Findings})
	}
}

// alertOn maps the decisions that send a webhook alert to its type.
var alertOn = map[string]string{
	"blocked":           "block",
	"retroactive-block": "retroactive_block",
}

func auditOf(ev Event) storage.AuditRecord {
	kind := storage.AuditPull
	if ev.Decision == "retroactive-block" {
		kind = storage.AuditRetroactive
	}
	return storage.AuditRecord{
		Time: ev.Time, Kind: kind, Client: ev.Client, UserAgent: ev.UserAgent,
		Image: ev.Image, Digest: ev.Digest, Decision: ev.Decision, Findings: ev.Findings,
		Reason: ev.Reason, Latency: ev.Latency,
	}
}

func eventOf(r storage.AuditRecord) Event {
	return Event{
		Time: r.Time, Client: r.Client, UserAgent: r.UserAgent, Image: r.Image, Digest: r.Digest,
		Decision: r.Decision, Findings: r.Findings, Reason: r.Reason, Latency: r.Latency,
	}
}
