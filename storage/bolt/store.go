package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pullgate/pullgate/storage"
	bolterrors "go.etcd.io/bbolt/errors"
)

// openTimeout bounds the wait for bbolt's file lock, so a second
// process pointed at the same file fails with a clear error instead of
// hanging. A variable so tests need not wait for it.
var openTimeout = 3 * time.Second

// maxBatchDelay is how long a write (Batch) waits for others to commit
// with it in one transaction. bbolt's default, 10 ms, is what a lone
// writer always waits: a cold manifest records its tag, its links and its
// config's verdict one after another, and at 10 ms each they were most of
// the time before it could be served (measured in docs/performance.md,
// "Store writes on the cold manifest path"). Writers that come together
// (a pull's links, concurrent pulls) still share a commit and its fsync.
const maxBatchDelay = time.Millisecond

// Bucket layout: verdicts/<digest>/<ruleset id>|<context>,
// overrides/<subject>, tags/<key>; values are JSON. links/<digest>/<repo>
// and roles/<digest>/<context> are sets (empty values). Verdicts of earlier
// releases sit at verdicts/<digest>/<ruleset id>.
var (
	bucketVerdicts  = []byte("verdicts")
	bucketOverrides = []byte("overrides")
	bucketTags      = []byte("tags")
	bucketLinks     = []byte("links")
	bucketRoles     = []byte("roles")
)

// Store is the embedded verdict store: one bbolt file on local disk.
type Store struct {
	db    *bbolt.DB
	path  string
	locks localLocker

	// Reads remembered (memo.go): verdicts by digest and field, links by
	// digest, overrides by subject (absent ones too) and their listing.
	verdicts  memo[storage.Verdict]
	links     memo[storage.Links]
	overrides memo[overrideRead]
	listing   memo[[]storage.Override]
}

// overrideRead is one override look-up: found or absent.
type overrideRead struct {
	o     storage.Override
	found bool
}

var (
	_ storage.Store  = (*Store)(nil)
	_ storage.Locker = (*Store)(nil)
)

// Open opens or creates the store file at path. Only one process may
// hold it; another one fails after a short wait.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("open verdict store: %w: empty path", storage.ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open verdict store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open verdict store %s: file is locked by another process (is another pullgate running with this data directory?): %w", path, err)
		}
		return nil, fmt.Errorf("open verdict store %s: %w", path, err)
	}
	db.MaxBatchDelay = maxBatchDelay
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketVerdicts, bucketOverrides, bucketTags, bucketLinks, bucketRoles} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open verdict store %s: create buckets: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Kind returns "embedded".
func (s *Store) Kind() string { return "embedded" }

// Close releases the file. Closing twice is harmless.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database is open and readable.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketVerdicts) == nil {
			return errors.New("verdict store: verdicts bucket missing")
		}
		return nil
	})
}

func (s *Store) get(ctx context.Context, bucket []byte, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucket).Get([]byte(key))
		if raw == nil {
			return storage.ErrNotFound
		}
		out = append([]byte(nil), raw...)
		return nil
	})
	return out, err
}

func (s *Store) put(ctx context.Context, bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), raw)
	})
}
