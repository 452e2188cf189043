package storage

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// RouteDistributionLogs sends what distribution's storage code logs through
// logrus's standard logger to l, at debug level. Storage returns every real
// failure as an error, and distribution logs some non-events at error level
// (each Cancel logs "error closing blobwriter: already closed"), so its
// lines are detail, not alarms. It changes logrus's global standard logger:
// call it once, from main.
func RouteDistributionLogs(l *slog.Logger) {
	std := logrus.StandardLogger()
	std.SetOutput(io.Discard)
	std.ReplaceHooks(logrus.LevelHooks{})
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		std.SetLevel(logrus.PanicLevel)
		return
	}
	std.SetLevel(logrus.DebugLevel)
	std.AddHook(slogHook{l: l.With("component", "distribution")})
}

type slogHook struct{ l *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	attrs := make([]slog.Attr, 0, len(e.Data)+1)
	attrs = append(attrs, slog.String("distribution_level", e.Level.String()))
	for k, v := range e.Data {
		attrs = append(attrs, slog.String(k, fmt.Sprint(v)))
	}
	h.l.LogAttrs(ctx, slog.LevelDebug, e.Message, attrs...)
	return nil
}
