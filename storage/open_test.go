package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
	pgredis "github.com/pullgate/pullgate/storage/redis"
)

func openStores(t *testing.T, c storage.Config) *storage.Stores {
	t.Helper()
	st, err := storage.Open(t.Context(), c)
	if err != nil {
		t.Fatalf("Open(%s): %v", c.Backend, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Each backend gives its capabilities by name, and says what it lacks.
func TestOpenNamesCapabilities(t *testing.T) {
	dir := t.TempDir()
	blobs := storage.BlobsConfig{Driver: "filesystem", Params: map[string]any{"rootdirectory": filepath.Join(dir, "blobs")}}
	cases := []struct {
		name    string
		config  func(t *testing.T) storage.Config
		bus     bool
		tee     bool
		without []string
	}{
		{"embedded", func(t *testing.T) storage.Config {
			return storage.Config{Backend: bolt.Name, Path: filepath.Join(t.TempDir(), "v.db"), AuditFile: filepath.Join(t.TempDir(), "a.jsonl"), Blobs: blobs}
		}, false, false, []string{"event bus", "shared audit log"}},
		{"redis", func(t *testing.T) storage.Config {
			return storage.Config{Backend: pgredis.Name, RedisURL: redisserver.Start(t).URL(), AuditFile: filepath.Join(t.TempDir(), "a.jsonl"), Blobs: blobs}
		}, true, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStores(t, tc.config(t))
			if st.Verdicts == nil || st.Overrides == nil || st.Tags == nil || st.Locks == nil || st.Audit == nil || st.Blobs == nil {
				t.Fatalf("Open left a required capability nil: %+v", st)
			}
			if (st.Bus != nil) != tc.bus {
				t.Errorf("Bus = %v, want one: %v", st.Bus, tc.bus)
			}
			if _, tee := st.Audit.(storage.TeeAuditLog); tee != tc.tee {
				t.Errorf("Audit = %T, want a tee of the shared log and the file: %v", st.Audit, tc.tee)
			}
			if len(st.Without) != len(tc.without) {
				t.Fatalf("Without = %q, want %d lines", st.Without, len(tc.without))
			}
			for i, w := range tc.without {
				if !strings.HasPrefix(st.Without[i], w+":") {
					t.Errorf("Without[%d] = %q, want it to name %q", i, st.Without[i], w)
				}
			}
			// The capabilities work: a lease is taken, and an audit record
			// read back.
			if _, err := st.Locks.TryLock(t.Context(), "k", 1e9); err != nil {
				t.Fatal(err)
			}
			if err := st.Audit.Append(t.Context(), storage.AuditRecord{Kind: storage.AuditPull, Image: "docker.io/library/a:1"}); err != nil {
				t.Fatal(err)
			}
			if got, err := st.Audit.Query(t.Context(), storage.AuditQuery{}); err != nil || len(got) != 1 {
				t.Fatalf("Audit.Query = %v, %v; want the record", got, err)
			}
		})
	}
}

// A backend without a locker is refused, and what it opened is closed.
func TestOpenRefusesBackendWithoutLocker(t *testing.T) {
	var closed bool
	storage.Register("test-no-locker", func(context.Context, storage.Config) (storage.Backend, error) {
		return storage.Backend{Store: closeRecorder{closed: &closed}}, nil
	})
	_, err := storage.Open(t.Context(), storage.Config{Backend: "test-no-locker"})
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "locker") {
		t.Fatalf("Open of a backend without a locker: %v, want ErrInvalid naming the locker", err)
	}
	if !closed {
		t.Error("the refused backend's store was left open")
	}
}

// A backend that gives no store at all is refused the same way, not with
// a panic on the way to the refusal.
func TestOpenRefusesBackendWithoutStore(t *testing.T) {
	storage.Register("test-no-store", func(context.Context, storage.Config) (storage.Backend, error) {
		return storage.Backend{}, nil
	})
	if _, err := storage.Open(t.Context(), storage.Config{Backend: "test-no-store"}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("Open of a backend without a store: %v, want ErrInvalid", err)
	}
}

// closeRecorder is a Store that only records being closed (calling any
// other method panics).
type closeRecorder struct {
	storage.Store
	closed *bool
}

func (c closeRecorder) Close() error { *c.closed = true; return nil }

func TestOpenRefusesUnknownBackendAndDriver(t *testing.T) {
	if _, err := storage.Open(t.Context(), storage.Config{Backend: "cassandra"}); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "embedded") {
		t.Errorf("Open of an unknown backend: %v, want ErrInvalid listing the known ones", err)
	}
	c := storage.Config{Backend: bolt.Name, Path: filepath.Join(t.TempDir(), "v.db"), Blobs: storage.BlobsConfig{Driver: "floppy"}}
	if _, err := storage.Open(t.Context(), c); err == nil {
		t.Error("Open with an unknown storage driver succeeded")
	}
	// The verdict store it opened first was closed: the file opens again.
	st := openStores(t, storage.Config{Backend: bolt.Name, Path: c.Path})
	if st.Blobs != nil {
		t.Error("Blobs opened without a driver")
	}
}
