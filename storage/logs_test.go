package storage_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/storage"
)

// Not parallel: it swaps logrus's global logger.
func TestRouteDistributionLogs(t *testing.T) {
	t.Cleanup(func() {
		storage.RouteDistributionLogs(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	})
	cancelOne := func() {
		b, err := storage.NewInMemoryBlobs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		w, err := b.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Cancel(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	var debug testsync.Buffer
	storage.RouteDistributionLogs(slog.New(slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cancelOne()
	if out := debug.String(); !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "component=distribution") {
		t.Fatalf("debug logger got %q, want distribution's lines at debug level", out)
	}
	if strings.Contains(debug.String(), "level=ERROR") {
		t.Fatalf("distribution's lines reached slog above debug: %q", debug.String())
	}

	var info testsync.Buffer
	storage.RouteDistributionLogs(slog.New(slog.NewTextHandler(&info, &slog.HandlerOptions{Level: slog.LevelInfo})))
	cancelOne()
	if out := info.String(); out != "" {
		t.Fatalf("info logger got %q, want nothing", out)
	}
}
