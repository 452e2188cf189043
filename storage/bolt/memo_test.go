package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
	"github.com/pullgate/pullgate/storage/storetest"
)

// Remembered reads stay exact: a read, a write that changes it, and the
// same read again sees the write.
func TestRememberedReadsFollowWrites(t *testing.T) {
	ctx := context.Background()
	d := storetest.Digest("layer")
	override := func(a storage.Action) storage.Override {
		return storage.Override{Subject: "docker.io/library/alpine", Action: a, Reason: "test", Actor: "tester", Time: time.Now().UTC()}
	}
	for _, tc := range []struct {
		name  string
		read  func(s *bolt.Store) (string, error)
		write func(s *bolt.Store) error
	}{
		{name: "verdict", read: func(s *bolt.Store) (string, error) {
			v, err := s.Verdict(ctx, d, "r1", storage.ContextLayer)
			return string(v.Status), err
		}, write: func(s *bolt.Store) error {
			return s.PutVerdict(ctx, storetest.SampleVerdict(d, "r1", storage.StatusBlocked))
		}},
		{name: "links", read: func(s *bolt.Store) (string, error) {
			l, err := s.Links(ctx, d)
			return strings.Join(l.Repos, ";"), err
		}, write: func(s *bolt.Store) error {
			return s.PutLink(ctx, "docker.io/library/other", d)
		}},
		{name: "override, absent then set", read: func(s *bolt.Store) (string, error) {
			o, err := s.Override(ctx, "docker.io/library/alpine")
			if errors.Is(err, storage.ErrNotFound) {
				return "absent", nil
			}
			return string(o.Action), err
		}, write: func(s *bolt.Store) error { return s.PutOverride(ctx, override(storage.Deny)) }},
		{name: "override removed", read: func(s *bolt.Store) (string, error) {
			o, err := s.Override(ctx, "docker.io/library/alpine")
			if errors.Is(err, storage.ErrNotFound) {
				return "absent", nil
			}
			return string(o.Action), err
		}, write: func(s *bolt.Store) error { return s.DeleteOverride(ctx, "docker.io/library/alpine") }},
		{name: "override listing", read: func(s *bolt.Store) (string, error) {
			all, err := s.Overrides(ctx)
			var out []string
			for _, o := range all {
				out = append(out, o.Subject+"="+string(o.Action))
			}
			return strings.Join(out, ";"), err
		}, write: func(s *bolt.Store) error { return s.PutOverride(ctx, override(storage.Deny)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openBolt(t, filepath.Join(t.TempDir(), "verdicts.db"))
			// A state to start from, read twice so the second is remembered.
			if err := s.PutVerdict(ctx, storetest.SampleVerdict(d, "r1", storage.StatusClean)); err != nil {
				t.Fatal(err)
			}
			if err := s.PutLink(ctx, "docker.io/library/alpine", d); err != nil {
				t.Fatal(err)
			}
			if tc.name == "override removed" {
				if err := s.PutOverride(ctx, override(storage.Allow)); err != nil {
					t.Fatal(err)
				}
			}
			before, err := tc.read(s)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := tc.read(s); err != nil || again != before {
				t.Fatalf("read twice: %q then %q, %v", before, again, err)
			}
			if err := tc.write(s); err != nil {
				t.Fatal(err)
			}
			after, err := tc.read(s)
			if err != nil {
				t.Fatal(err)
			}
			if after == before {
				t.Fatalf("after the write the read still says %q", after)
			}
		})
	}
}

// What a caller does to the slices it was given does not reach the next
// caller.
func TestRememberedLinksAreCopies(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "verdicts.db"))
	d := storetest.Digest("layer")
	if err := s.PutLink(ctx, "docker.io/library/alpine", d, storage.ContextLayer); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l, err := s.Links(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l.Repos, []string{"docker.io/library/alpine"}) {
			t.Fatalf("links %v", l.Repos)
		}
		l.Repos[0] = "changed by a caller"
	}
}
