package storage

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
)

// TagRecord is the last known mapping of a tag to a manifest digest, served
// when the upstream cannot be asked.
type TagRecord struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type"`
	Size      int64         `json:"size"`
	Time      time.Time     `json:"time"` // when upstream last confirmed it
}

// Validate refuses a record with a malformed digest.
func (r TagRecord) Validate() error {
	if err := r.Digest.Validate(); err != nil {
		return fmt.Errorf("tag record digest %q: %w: %w", r.Digest, ErrInvalid, err)
	}
	return nil
}

// VerdictStore keeps scan verdicts and what manifests say of each digest.
type VerdictStore interface {
	// Verdict returns the verdict for dgst under rulesetID in context c.
	Verdict(ctx context.Context, dgst digest.Digest, rulesetID string, c Context) (Verdict, error)
	// PutVerdict stores v, replacing any verdict for the same digest,
	// ruleset and context. Readers see the old or the new value, never a mix.
	PutVerdict(ctx context.Context, v Verdict) error
	// Verdicts returns every verdict for dgst (every ruleset, every context,
	// records without a context too), newest first; none is an empty slice,
	// not an error.
	Verdicts(ctx context.Context, dgst digest.Digest) ([]Verdict, error)

	// PutLink records that upstream confirmed the repository repo (fully
	// qualified: "docker.io/library/alpine") carries dgst, and adds roles
	// (the contexts a manifest names the blob in) to what is known of dgst.
	// A digest carried by more than MaxLinks repositories refuses new ones
	// with ErrLimit: the link is then confirmed upstream each time.
	PutLink(ctx context.Context, repo string, dgst digest.Digest, roles ...Context) error
	// Links returns what is known of dgst: the repositories confirmed to
	// carry it and the roles manifests give it; none is empty, not an error.
	Links(ctx context.Context, dgst digest.Digest) (Links, error)
}

// OverrideStore keeps operators' overrides. Records of earlier releases
// are read through DecodeOverride, so they keep their meaning.
type OverrideStore interface {
	Override(ctx context.Context, subject string) (Override, error)
	PutOverride(ctx context.Context, o Override) error
	// DeleteOverride removes an override; an absent one wraps ErrNotFound.
	DeleteOverride(ctx context.Context, subject string) error
	// Overrides returns every override, sorted by subject.
	Overrides(ctx context.Context) ([]Override, error)
}

// TagStore keeps the last known manifest of each tag.
type TagStore interface {
	// Tag returns the last known record for key, e.g.
	// "docker.io/library/alpine:3.20".
	Tag(ctx context.Context, key string) (TagRecord, error)
	PutTag(ctx context.Context, key string, t TagRecord) error
}

// Store is one backend's verdicts, overrides and tags. Every "absent"
// answer wraps ErrNotFound; every backend failure is an error that does
// not, so callers can fail closed. Both backends pass storetest.Run.
type Store interface {
	VerdictStore
	OverrideStore
	TagStore

	Ping(ctx context.Context) error
	Close() error
	// Kind names the implementation: "redis" or "embedded".
	Kind() string
}

// MaxLinks bounds the repositories recorded for one digest, so the list
// read on every request for it stays small.
const MaxLinks = 1024

// Links is what the store knows of one digest beyond its verdicts.
type Links struct {
	// Repos are the fully qualified repositories upstream confirmed carry
	// the digest, sorted.
	Repos []string `json:"repos"`
	// Roles are the contexts manifests name the digest in (config, layer,
	// artifact), sorted; empty when no manifest named it.
	Roles []Context `json:"roles"`
}

// Has reports whether repo is among l.Repos.
func (l Links) Has(repo string) bool {
	i := sort.SearchStrings(l.Repos, repo)
	return i < len(l.Repos) && l.Repos[i] == repo
}
