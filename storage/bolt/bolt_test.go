package bolt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
	"github.com/pullgate/pullgate/storage/storetest"
)

func openBolt(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBoltConformance(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) storage.Store {
			return openBolt(t, filepath.Join(t.TempDir(), "verdicts.db"))
		},
		storetest.WithReopen(func(t *testing.T, s storage.Store) storage.Store {
			path := s.(*bolt.Store).Path()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openBolt(t, path)
		}),
		storetest.WithLegacyVerdicts(bolt.PutLegacyVerdict),
	)
}

func TestBoltLockedByAnotherHolder(t *testing.T) {
	bolt.SetOpenTimeout(t, 100*time.Millisecond)
	path := filepath.Join(t.TempDir(), "verdicts.db")
	first := openBolt(t, path)

	// bbolt takes an flock, which a second open file description conflicts
	// with even inside one process, just as another pullgate would.
	start := time.Now()
	_, err := bolt.Open(path)
	if err == nil {
		t.Fatal("second Open of a held file succeeded")
	}
	if !errors.Is(err, bolterrors.ErrTimeout) || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Open: %v; want a lock timeout naming the file", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("second Open took %s", waited)
	}

	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	openBolt(t, path)
}

func TestBoltCreatesParentDirectory(t *testing.T) {
	openBolt(t, filepath.Join(t.TempDir(), "a", "b", "verdicts.db"))
}

func TestBoltRefusesEmptyPath(t *testing.T) {
	if _, err := bolt.Open(""); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("Open(\"\"): %v, want ErrInvalid", err)
	}
}

func TestBoltLocker(t *testing.T) {
	storetest.RunLocker(t, func(t *testing.T) storage.Locker {
		return openBolt(t, filepath.Join(t.TempDir(), "verdicts.db"))
	})
}

// TestBoltReadsOverridesOfTheLastRelease opens a bbolt file written before
// overrides had an Image field (a copy: test data is never written) and
// reads its overrides with their meaning.
func TestBoltReadsOverridesOfTheLastRelease(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "overrides-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "verdicts.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	storetest.CheckLegacyOverrides(t, openBolt(t, path))
}
