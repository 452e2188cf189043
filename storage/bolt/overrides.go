package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/internal/kit"
)

func (s *Store) Override(ctx context.Context, subject string) (storage.Override, error) {
	if err := storage.ValidateSubject(subject); err != nil {
		return storage.Override{}, fmt.Errorf("get override: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Override{}, err
	}
	if r, ok := s.overrides.get(subject); ok {
		if !r.found {
			return storage.Override{}, fmt.Errorf("get override %s: %w", subject, storage.ErrNotFound)
		}
		return r.o, nil
	}
	gen := s.overrides.generation()
	raw, err := s.get(ctx, bucketOverrides, subject)
	if errors.Is(err, storage.ErrNotFound) {
		s.overrides.put(subject, overrideRead{}, gen)
	}
	if err != nil {
		return storage.Override{}, fmt.Errorf("get override %s: %w", subject, err)
	}
	o, err := storage.DecodeOverride(raw)
	if err != nil {
		return storage.Override{}, fmt.Errorf("get override %s: %w", subject, err)
	}
	s.overrides.put(subject, overrideRead{o: o, found: true}, gen)
	return o, nil
}

func (s *Store) PutOverride(ctx context.Context, o storage.Override) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("put override: %w", err)
	}
	err := s.put(ctx, bucketOverrides, o.Subject, o)
	s.forgetOverrides()
	if err != nil {
		return fmt.Errorf("put override %s: %w", o.Subject, err)
	}
	return nil
}

func (s *Store) DeleteOverride(ctx context.Context, subject string) error {
	if err := storage.ValidateSubject(subject); err != nil {
		return fmt.Errorf("delete override: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOverrides)
		if b.Get([]byte(subject)) == nil {
			return storage.ErrNotFound
		}
		return b.Delete([]byte(subject))
	})
	s.forgetOverrides()
	if err != nil {
		return fmt.Errorf("delete override %s: %w", subject, err)
	}
	return nil
}

func (s *Store) Overrides(ctx context.Context) ([]storage.Override, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if all, ok := s.listing.get(""); ok {
		return slices.Clone(all), nil
	}
	gen := s.listing.generation()
	out := []storage.Override{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOverrides).ForEach(func(k, raw []byte) error {
			o, err := storage.DecodeOverride(raw)
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
	kit.SortOverrides(out)
	s.listing.put("", slices.Clone(out), gen)
	return out, nil
}

// forgetOverrides drops every remembered override read: a write changes
// one subject's look-up and the listing.
func (s *Store) forgetOverrides() {
	s.overrides.forgetAll()
	s.listing.forgetAll()
}

func (s *Store) Tag(ctx context.Context, key string) (storage.TagRecord, error) {
	if err := kit.ValidateTagKey(key); err != nil {
		return storage.TagRecord{}, fmt.Errorf("get tag: %w", err)
	}
	raw, err := s.get(ctx, bucketTags, key)
	if err != nil {
		return storage.TagRecord{}, fmt.Errorf("get tag %s: %w", key, err)
	}
	var t storage.TagRecord
	if err := json.Unmarshal(raw, &t); err != nil {
		return storage.TagRecord{}, fmt.Errorf("get tag %s: decode: %w", key, err)
	}
	return t, nil
}

func (s *Store) PutTag(ctx context.Context, key string, t storage.TagRecord) error {
	if err := kit.ValidateTagKey(key); err != nil {
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
