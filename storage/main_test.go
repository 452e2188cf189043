package storage_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/pullgate/pullgate/storage"
)

func TestMain(m *testing.M) {
	storage.RouteDistributionLogs(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	os.Exit(m.Run())
}
