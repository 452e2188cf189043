package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// boltOpenTimeout bounds the wait for bbolt's file lock, so a second
// process pointed at the same file fails with a clear error instead of
// hanging. A variable so tests need not wait for it.
var boltOpenTimeout = 3 * time.Second

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

// BoltStore is the embedded verdict store: one bbolt file on local disk,
// for a single node with nothing else to run.
type BoltStore struct {
	db    *bbolt.DB
	path  string
	locks localLocker
}

var (
	_ Store  = (*BoltStore)(nil)
	_ Locker = (*BoltStore)(nil)
)

// OpenBolt opens or creates the store file at path. Only one process may
// hold it; another one fails after a short wait.
func OpenBolt(path string) (*BoltStore, error) {
	if path == "" {
		return nil, fmt.Errorf("open verdict store: %w: empty path", ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open verdict store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open verdict store %s: file is locked by another process (is another pullgate running with this data directory?): %w", path, err)
		}
		return nil, fmt.Errorf("open verdict store %s: %w", path, err)
	}
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
	return &BoltStore{db: db, path: path}, nil
}

// TryLock takes a lease. Only one process can hold the bbolt file, so the
// leases live in this process's memory.
func (s *BoltStore) TryLock(ctx context.Context, key string, ttl time.Duration) (Lease, error) {
	return s.locks.TryLock(ctx, key, ttl)
}

// Path returns the file the store lives in.
func (s *BoltStore) Path() string { return s.path }

// Kind returns "embedded".
func (s *BoltStore) Kind() string { return "embedded" }

// Close releases the file. Closing twice is harmless.
func (s *BoltStore) Close() error { return s.db.Close() }

// Ping checks the database is open and readable.
func (s *BoltStore) Ping(ctx context.Context) error {
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

func (s *BoltStore) Verdict(ctx context.Context, dgst digest.Digest, rulesetID string, c Context) (Verdict, error) {
	if err := validateLookup(dgst, rulesetID, c); err != nil {
		return Verdict{}, fmt.Errorf("get verdict %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Verdict{}, err
	}
	var v Verdict
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketVerdicts).Bucket([]byte(dgst))
		if b == nil {
			return ErrNotFound
		}
		raw := b.Get([]byte(verdictField(rulesetID, c)))
		if raw == nil {
			return ErrNotFound
		}
		return decodeVerdictIn(raw, dgst, c, &v)
	})
	if err != nil {
		return Verdict{}, fmt.Errorf("get verdict %s ruleset %s context %s: %w", dgst, rulesetID, c, err)
	}
	return v, nil
}

func (s *BoltStore) PutVerdict(ctx context.Context, v Verdict) error {
	if err := v.Validate(); err != nil {
		return fmt.Errorf("put verdict: %w", err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put verdict %s: %w", v.Digest, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Batch coalesces concurrent writers into one fsync; the function is
	// idempotent, as Batch requires.
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(bucketVerdicts).CreateBucketIfNotExists([]byte(v.Digest))
		if err != nil {
			return err
		}
		return b.Put([]byte(verdictField(v.RulesetID, v.Context)), raw)
	})
	if err != nil {
		return fmt.Errorf("put verdict %s ruleset %s context %s: %w", v.Digest, v.RulesetID, v.Context, err)
	}
	return nil
}

func (s *BoltStore) Verdicts(ctx context.Context, dgst digest.Digest) ([]Verdict, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("list verdicts %q: %w: %w", dgst, ErrInvalid, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vs := []Verdict{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketVerdicts).Bucket([]byte(dgst))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, raw []byte) error {
			var v Verdict
			if err := decodeVerdict(raw, dgst, &v); err != nil {
				return err
			}
			vs = append(vs, v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list verdicts %s: %w", dgst, err)
	}
	sortVerdicts(vs)
	return vs, nil
}

func (s *BoltStore) PutLink(ctx context.Context, repo string, dgst digest.Digest, roles ...Context) error {
	if err := validateLink(repo, dgst, roles); err != nil {
		return fmt.Errorf("put link: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		links, err := tx.Bucket(bucketLinks).CreateBucketIfNotExists([]byte(dgst))
		if err != nil {
			return err
		}
		if links.Get([]byte(repo)) == nil {
			// Counted with a cursor: Stats does not see the writes of
			// this transaction, which Batch shares between callers.
			n := 0
			c := links.Cursor()
			for k, _ := c.First(); k != nil && n < MaxLinks; k, _ = c.Next() {
				n++
			}
			if n >= MaxLinks {
				return fmt.Errorf("%w: %d repositories already carry it", ErrLimit, MaxLinks)
			}
			if err := links.Put([]byte(repo), []byte{}); err != nil {
				return err
			}
		}
		if len(roles) == 0 {
			return nil
		}
		rb, err := tx.Bucket(bucketRoles).CreateBucketIfNotExists([]byte(dgst))
		if err != nil {
			return err
		}
		for _, c := range roles {
			if err := rb.Put([]byte(c), []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("link %s to %s: %w", repo, dgst, err)
	}
	return nil
}

func (s *BoltStore) Links(ctx context.Context, dgst digest.Digest) (Links, error) {
	if err := dgst.Validate(); err != nil {
		return Links{}, fmt.Errorf("get links %q: %w: %w", dgst, ErrInvalid, err)
	}
	if err := ctx.Err(); err != nil {
		return Links{}, err
	}
	l := Links{Repos: []string{}, Roles: []Context{}}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketLinks).Bucket([]byte(dgst)); b != nil {
			if err := b.ForEach(func(k, _ []byte) error { l.Repos = append(l.Repos, string(k)); return nil }); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketRoles).Bucket([]byte(dgst)); b != nil {
			return b.ForEach(func(k, _ []byte) error { l.Roles = append(l.Roles, Context(k)); return nil })
		}
		return nil
	})
	if err != nil {
		return Links{}, fmt.Errorf("get links %s: %w", dgst, err)
	}
	sortLinks(&l)
	return l, nil
}

func (s *BoltStore) Override(ctx context.Context, subject string) (Override, error) {
	if err := ValidateSubject(subject); err != nil {
		return Override{}, fmt.Errorf("get override: %w", err)
	}
	raw, err := s.get(ctx, bucketOverrides, subject)
	if err != nil {
		return Override{}, fmt.Errorf("get override %s: %w", subject, err)
	}
	o, err := DecodeOverride(raw)
	if err != nil {
		return Override{}, fmt.Errorf("get override %s: %w", subject, err)
	}
	return o, nil
}

func (s *BoltStore) PutOverride(ctx context.Context, o Override) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("put override: %w", err)
	}
	if err := s.put(ctx, bucketOverrides, o.Subject, o); err != nil {
		return fmt.Errorf("put override %s: %w", o.Subject, err)
	}
	return nil
}

func (s *BoltStore) DeleteOverride(ctx context.Context, subject string) error {
	if err := ValidateSubject(subject); err != nil {
		return fmt.Errorf("delete override: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOverrides)
		if b.Get([]byte(subject)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(subject))
	})
	if err != nil {
		return fmt.Errorf("delete override %s: %w", subject, err)
	}
	return nil
}

func (s *BoltStore) Overrides(ctx context.Context) ([]Override, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []Override{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOverrides).ForEach(func(k, raw []byte) error {
			o, err := DecodeOverride(raw)
			if err != nil {
				return fmt.Errorf("override %s: %w", k, err)
			}
			out = append(out, o)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list overrides: %w", err)
	}
	sortOverrides(out)
	return out, nil
}

func (s *BoltStore) Tag(ctx context.Context, key string) (TagRecord, error) {
	if err := validateTagKey(key); err != nil {
		return TagRecord{}, fmt.Errorf("get tag: %w", err)
	}
	raw, err := s.get(ctx, bucketTags, key)
	if err != nil {
		return TagRecord{}, fmt.Errorf("get tag %s: %w", key, err)
	}
	var t TagRecord
	if err := json.Unmarshal(raw, &t); err != nil {
		return TagRecord{}, fmt.Errorf("get tag %s: decode: %w", key, err)
	}
	return t, nil
}

func (s *BoltStore) PutTag(ctx context.Context, key string, t TagRecord) error {
	if err := validateTagKey(key); err != nil {
		return fmt.Errorf("put tag: %w", err)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("put tag %s: %w", key, err)
	}
	if err := s.put(ctx, bucketTags, key, t); err != nil {
		return fmt.Errorf("put tag %s: %w", key, err)
	}
	return nil
}

// get returns a copy of the value at key (bbolt's own bytes live only as
// long as the transaction).
func (s *BoltStore) get(ctx context.Context, bucket []byte, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucket).Get([]byte(key))
		if raw == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), raw...)
		return nil
	})
	return out, err
}

func (s *BoltStore) put(ctx context.Context, bucket []byte, key string, v any) error {
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

// decodeVerdict decodes raw and checks it belongs to dgst, so a corrupted
// or misfiled value is an error, never another blob's verdict.
func decodeVerdict(raw []byte, dgst digest.Digest, v *Verdict) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode verdict: %w", err)
	}
	if v.Digest != dgst {
		return fmt.Errorf("stored verdict is for %s, not %s", v.Digest, dgst)
	}
	return nil
}

// decodeVerdictIn is decodeVerdict for a look-up in context c: a record of
// another context (or of none, from an earlier release) is absent, so the
// blob is scanned again rather than judged by how it was read before.
func decodeVerdictIn(raw []byte, dgst digest.Digest, c Context, v *Verdict) error {
	if err := decodeVerdict(raw, dgst, v); err != nil {
		return err
	}
	if v.Context != c {
		return fmt.Errorf("%w: stored verdict is in context %q, not %q", ErrNotFound, v.Context, c)
	}
	return nil
}
