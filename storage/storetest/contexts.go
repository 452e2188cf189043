package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

var allContexts = []storage.Context{storage.ContextLayer, storage.ContextConfig, storage.ContextArtifact}

// testVerdictContexts checks that one digest under one ruleset keeps a
// verdict per context, and that no context answers for another.
func testVerdictContexts(t *testing.T, s storage.Store) {
	d := Digest("contexts")
	layer := SampleVerdict(d, "rules-v1", storage.StatusClean)
	mustPutVerdict(t, s, layer)
	for _, c := range []storage.Context{storage.ContextConfig, storage.ContextArtifact} {
		_, err := s.Verdict(ctx(t), d, "rules-v1", c)
		wantNotFound(t, fmt.Sprintf("Verdict in context %s of a blob scanned only as a layer", c), err)
	}

	config := SampleVerdict(d, "rules-v1", storage.StatusBlocked)
	config.Context = storage.ContextConfig
	mustPutVerdict(t, s, config)
	for c, want := range map[storage.Context]storage.Verdict{storage.ContextLayer: layer, storage.ContextConfig: config} {
		got, err := s.Verdict(ctx(t), d, "rules-v1", c)
		if err != nil || !equalVerdict(got, want) {
			t.Errorf("Verdict(%s) = %+v, %v; want %+v", c, got, err, want)
		}
	}
	vs, err := s.Verdicts(ctx(t), d)
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	if len(vs) != 2 {
		t.Fatalf("Verdicts: %d, want one per context: %+v", len(vs), vs)
	}
}

// testLegacyVerdict checks that a verdict stored by a release without
// contexts is listed, but answers no look-up in any context: its blob is
// scanned again in the context it is asked for.
func testLegacyVerdict(t *testing.T, s storage.Store, put func(t *testing.T, s storage.Store, v storage.Verdict)) {
	d := Digest("legacy")
	old := SampleVerdict(d, "rules-v1", storage.StatusClean)
	old.Context = ""
	put(t, s, old)
	for _, c := range allContexts {
		_, err := s.Verdict(ctx(t), d, "rules-v1", c)
		wantNotFound(t, fmt.Sprintf("Verdict in context %s of a record without context", c), err)
	}
	vs, err := s.Verdicts(ctx(t), d)
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	if len(vs) != 1 || vs[0].Context != "" || vs[0].Status != storage.StatusClean {
		t.Fatalf("Verdicts of a legacy record = %+v, want it listed without a context", vs)
	}
	// A new verdict in a context lives beside the old record.
	mustPutVerdict(t, s, SampleVerdict(d, "rules-v1", storage.StatusBlocked))
	if got, err := s.Verdict(ctx(t), d, "rules-v1", storage.ContextLayer); err != nil || got.Status != storage.StatusBlocked {
		t.Fatalf("Verdict(layer) after a new put = %+v, %v", got, err)
	}
}

func testLinks(t *testing.T, s storage.Store) {
	d, other := Digest("links"), Digest("links-other")
	l, err := s.Links(ctx(t), d)
	if err != nil {
		t.Fatalf("Links of an unknown digest: %v, want an empty answer", err)
	}
	if len(l.Repos) != 0 || len(l.Roles) != 0 || l.Has("docker.io/library/alpine") {
		t.Fatalf("Links of an unknown digest = %+v", l)
	}

	puts := []struct {
		repo  string
		roles []storage.Context
	}{
		{"docker.io/library/alpine", []storage.Context{storage.ContextLayer}},
		{"docker.io/library/alpine", nil}, // again: no duplicate
		{"ghcr.io/acme/tool", []storage.Context{storage.ContextConfig, storage.ContextLayer}},
		{"docker.io/bitnami/redis", nil},
	}
	for _, p := range puts {
		if err := s.PutLink(ctx(t), p.repo, d, p.roles...); err != nil {
			t.Fatalf("PutLink(%s, %v): %v", p.repo, p.roles, err)
		}
	}
	if err := s.PutLink(ctx(t), "docker.io/library/busybox", other); err != nil {
		t.Fatalf("PutLink(other): %v", err)
	}

	got, err := s.Links(ctx(t), d)
	if err != nil {
		t.Fatalf("Links: %v", err)
	}
	want := storage.Links{
		Repos: []string{"docker.io/bitnami/redis", "docker.io/library/alpine", "ghcr.io/acme/tool"},
		Roles: []storage.Context{storage.ContextConfig, storage.ContextLayer},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Links = %+v, want %+v", got, want)
	}
	for repo, has := range map[string]bool{"docker.io/library/alpine": true, "ghcr.io/acme/tool": true, "docker.io/library/busybox": false, "docker.io/library/alpin": false} {
		if got.Has(repo) != has {
			t.Errorf("Has(%s) = %v, want %v", repo, !has, has)
		}
	}
}

func testLinksInvalid(t *testing.T, s storage.Store) {
	d := Digest("links-invalid")
	cases := []struct {
		name  string
		repo  string
		dgst  string
		roles []storage.Context
	}{
		{"malformed digest", "docker.io/library/alpine", "sha256:nothex", nil},
		{"empty repository", "", string(d), nil},
		{"repository not fully qualified", "alpine", string(d), nil},
		{"repository with a tag", "docker.io/library/alpine:3", string(d), nil},
		{"repository with a digest", "docker.io/library/alpine@" + string(d), string(d), nil},
		{"unknown role", "docker.io/library/alpine", string(d), []storage.Context{"tarball"}},
		{"empty role", "docker.io/library/alpine", string(d), []storage.Context{""}},
	}
	for _, tc := range cases {
		wantInvalid(t, "PutLink with "+tc.name, s.PutLink(ctx(t), tc.repo, digest.Digest(tc.dgst), tc.roles...))
	}
	_, err := s.Links(ctx(t), "nope")
	wantInvalid(t, "Links with a malformed digest", err)
	l, err := s.Links(ctx(t), d)
	if err != nil || len(l.Repos) != 0 || len(l.Roles) != 0 {
		t.Fatalf("Links after refused puts = %+v, %v; want none", l, err)
	}
}

// testLinksBounded puts more than MaxLinks repositories for one digest at
// once: exactly MaxLinks are kept, the rest are refused with ErrLimit, and
// a repository already linked can still be put again.
func testLinksBounded(t *testing.T, s storage.Store) {
	d := Digest("links-bounded")
	const extra = 40
	var (
		wg      sync.WaitGroup
		ok, lim atomic.Int64
		errs    = make(chan error, storage.MaxLinks+extra)
		next    atomic.Int64
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= storage.MaxLinks+extra {
					return
				}
				err := s.PutLink(ctx(t), fmt.Sprintf("docker.io/team/app-%d", i), d)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, storage.ErrLimit):
					lim.Add(1)
				default:
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ok.Load() != storage.MaxLinks || lim.Load() != extra {
		t.Fatalf("%d links kept, %d refused; want %d and %d", ok.Load(), lim.Load(), storage.MaxLinks, extra)
	}
	l, err := s.Links(ctx(t), d)
	if err != nil || len(l.Repos) != storage.MaxLinks {
		t.Fatalf("Links: %d repositories, %v; want %d", len(l.Repos), err, storage.MaxLinks)
	}
	if err := s.PutLink(ctx(t), l.Repos[0], d, storage.ContextLayer); err != nil {
		t.Fatalf("PutLink of a repository already linked, at the bound: %v", err)
	}
}
