package proxy

import (
	"context"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// event is one decision pullgate made about a pull: the unit of its logs,
// metrics and (later) audit log.
type event struct {
	Time      time.Time
	Client    string
	UserAgent string
	Image     string
	Digest    digest.Digest
	Decision  string
	Findings  []storage.Finding
	Reason    string
	Latency   time.Duration
}

// record logs one line per decision, with stable keys.
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
}
