package events

import (
	"context"
	"log/slog"
	"time"
)

// Fanout hands each event to every sink in order. It is what a handler or
// the gate emits to: the event is stamped with the time (when it has none)
// and bounded once, here, so every sink sees the same event.
type Fanout []Sink

// Emit stamps and bounds ev, then gives it to each sink.
func (f Fanout) Emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev = ev.Bounded()
	for _, s := range f {
		s.Emit(ev)
	}
}

// Log is the sink that writes one line per decision, with stable keys:
// a refusal at warning level, anything else at info.
func Log(logger *slog.Logger) Sink {
	return SinkFunc(func(ev Event) {
		attrs := []any{
			slog.String("image", ev.Image),
			slog.String("digest", ev.Digest.String()),
			slog.String("decision", ev.Decision.String()),
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
		if ev.Decision.Refused() {
			level = slog.LevelWarn
		}
		logger.Log(context.Background(), level, "decision", attrs...)
	})
}

// Registry is the registry part of the event's image ("docker.io" for
// "docker.io/library/alpine:3"), as the metrics and the admin page group
// upstream failures.
func (ev Event) Registry() string {
	for i := 0; i < len(ev.Image); i++ {
		if ev.Image[i] == '/' {
			return ev.Image[:i]
		}
	}
	return ev.Image
}
