package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/internal/dcheck"
	"github.com/pullgate/pullgate/storage/internal/kit"
)

func (s *Store) Verdict(ctx context.Context, dgst digest.Digest, rulesetID string, c storage.Context) (storage.Verdict, error) {
	if err := kit.ValidateLookup(dgst, rulesetID, c); err != nil {
		return storage.Verdict{}, fmt.Errorf("get verdict %w", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Verdict{}, err
	}
	key := string(dgst) + "/" + kit.VerdictField(rulesetID, c)
	if v, ok := s.verdicts.get(key); ok {
		return v, nil
	}
	gen := s.verdicts.generation()
	var v storage.Verdict
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketVerdicts).Bucket([]byte(dgst))
		if b == nil {
			return storage.ErrNotFound
		}
		raw := b.Get([]byte(kit.VerdictField(rulesetID, c)))
		if raw == nil {
			return storage.ErrNotFound
		}
		var err error
		v, err = kit.DecodeVerdictIn(raw, dgst, c)
		return err
	})
	if err != nil {
		return storage.Verdict{}, fmt.Errorf("get verdict %s ruleset %s context %s: %w", dgst, rulesetID, c, err)
	}
	// Clipped: a caller's append to the findings gets an array of its own.
	v.Findings = slices.Clip(v.Findings)
	s.verdicts.put(key, v, gen)
	return v, nil
}

func (s *Store) PutVerdict(ctx context.Context, v storage.Verdict) error {
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
		return b.Put([]byte(kit.VerdictField(v.RulesetID, v.Context)), raw)
	})
	s.verdicts.forget(string(v.Digest) + "/" + kit.VerdictField(v.RulesetID, v.Context))
	if err != nil {
		return fmt.Errorf("put verdict %s ruleset %s context %s: %w", v.Digest, v.RulesetID, v.Context, err)
	}
	return nil
}

func (s *Store) Verdicts(ctx context.Context, dgst digest.Digest) ([]storage.Verdict, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return nil, fmt.Errorf("list verdicts %q: %w: %w", dgst, storage.ErrInvalid, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vs := []storage.Verdict{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketVerdicts).Bucket([]byte(dgst))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, raw []byte) error {
			v, err := kit.DecodeVerdict(raw, dgst)
			if err != nil {
				return err
			}
			vs = append(vs, v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list verdicts %s: %w", dgst, err)
	}
	kit.SortVerdicts(vs)
	return vs, nil
}

func (s *Store) PutLink(ctx context.Context, repo string, dgst digest.Digest, roles ...storage.Context) error {
	if err := kit.ValidateLink(repo, dgst, roles); err != nil {
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
			for k, _ := c.First(); k != nil && n < storage.MaxLinks; k, _ = c.Next() {
				n++
			}
			if n >= storage.MaxLinks {
				return fmt.Errorf("%w: %d repositories already carry it", storage.ErrLimit, storage.MaxLinks)
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
	s.links.forget(string(dgst))
	if err != nil {
		return fmt.Errorf("link %s to %s: %w", repo, dgst, err)
	}
	return nil
}

func (s *Store) Links(ctx context.Context, dgst digest.Digest) (storage.Links, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return storage.Links{}, fmt.Errorf("get links %q: %w: %w", dgst, storage.ErrInvalid, err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Links{}, err
	}
	if l, ok := s.links.get(string(dgst)); ok {
		return cloneLinks(l), nil
	}
	gen := s.links.generation()
	l := storage.Links{Repos: []string{}, Roles: []storage.Context{}}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketLinks).Bucket([]byte(dgst)); b != nil {
			if err := b.ForEach(func(k, _ []byte) error { l.Repos = append(l.Repos, string(k)); return nil }); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketRoles).Bucket([]byte(dgst)); b != nil {
			return b.ForEach(func(k, _ []byte) error { l.Roles = append(l.Roles, storage.Context(k)); return nil })
		}
		return nil
	})
	if err != nil {
		return storage.Links{}, fmt.Errorf("get links %s: %w", dgst, err)
	}
	kit.SortLinks(&l)
	s.links.put(string(dgst), cloneLinks(l), gen)
	return l, nil
}

// cloneLinks copies l, so that what a caller does to its slices does not
// reach the remembered copy.
func cloneLinks(l storage.Links) storage.Links {
	return storage.Links{Repos: slices.Clone(l.Repos), Roles: slices.Clone(l.Roles)}
}
