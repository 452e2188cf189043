package storage

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
)

// Status is the outcome of scanning one blob under one ruleset.
type Status string

const (
	StatusClean   Status = "clean"
	StatusBlocked Status = "blocked"
	StatusError   Status = "error" // the scan could not finish; serve nothing
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusClean, StatusBlocked, StatusError:
		return true
	}
	return false
}

// Context is how a blob was scanned: the same bytes read as a layer (a tar
// stream of files), as an image config (JSON with a command line and an
// environment) or as a raw artifact answer different questions, so a
// verdict in one context says nothing about another.
type Context string

const (
	ContextLayer    Context = "layer"    // a tar layer, walked file by file
	ContextConfig   Context = "config"   // an image config, read as JSON
	ContextArtifact Context = "artifact" // anything else, scanned as raw bytes
)

// Valid reports whether c is one of the known contexts. The empty context
// of records stored before contexts existed is not.
func (c Context) Valid() bool {
	switch c {
	case ContextLayer, ContextConfig, ContextArtifact:
		return true
	}
	return false
}

// Finding is one indicator found in a blob (the scanner's own type).
type Finding = verdict.Finding

// Verdict is the result of scanning the blob Digest under the ruleset
// RulesetID in Context. A verdict under another ruleset, or in another
// context, says nothing about this one. Records written before contexts
// existed have an empty Context: they are listed by Verdicts but never
// returned by Verdict, so their blobs are scanned again.
type Verdict struct {
	Digest         digest.Digest `json:"digest"`
	RulesetID      string        `json:"ruleset_id"`
	Context        Context       `json:"context,omitempty"`
	Status         Status        `json:"status"`
	Findings       []Finding     `json:"findings,omitempty"`
	Reason         string        `json:"reason,omitempty"` // for StatusError: why the scan could not finish
	Bytes          int64         `json:"bytes"`            // decompressed bytes scanned
	Files          int64         `json:"files"`            // files scanned
	Duration       time.Duration `json:"duration"`         // nanoseconds
	ScannerVersion string        `json:"scanner_version"`
	Time           time.Time     `json:"time"`
}

// Validate refuses a verdict that cannot be stored or looked up again.
func (v Verdict) Validate() error {
	if err := v.Digest.Validate(); err != nil {
		return fmt.Errorf("verdict digest %q: %w: %w", v.Digest, ErrInvalid, err)
	}
	if err := validateRulesetID(v.RulesetID); err != nil {
		return fmt.Errorf("verdict for %s: %w", v.Digest, err)
	}
	if !v.Status.Valid() {
		return fmt.Errorf("verdict for %s: %w: status %q", v.Digest, ErrInvalid, v.Status)
	}
	if !v.Context.Valid() {
		return fmt.Errorf("verdict for %s: %w: context %q", v.Digest, ErrInvalid, v.Context)
	}
	return nil
}

func validateLookup(dgst digest.Digest, rulesetID string, c Context) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("%q: %w: %w", dgst, ErrInvalid, err)
	}
	if err := validateRulesetID(rulesetID); err != nil {
		return fmt.Errorf("%s: %w", dgst, err)
	}
	if !c.Valid() {
		return fmt.Errorf("%s: %w: context %q", dgst, ErrInvalid, c)
	}
	return nil
}

// verdictField is where a verdict lives under its digest: the ruleset id
// and the context. Records of earlier releases live under the bare ruleset
// id, which no lookup asks for.
func verdictField(rulesetID string, c Context) string { return rulesetID + "|" + string(c) }

func validateRulesetID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty ruleset id", ErrInvalid)
	}
	return nil
}

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

func validateTagKey(key string) error {
	if key == "" {
		return fmt.Errorf("tag key: %w: empty", ErrInvalid)
	}
	return nil
}

// Store keeps verdicts, operator overrides and last known tags. Every
// "absent" answer wraps ErrNotFound; every backend failure is an error that
// does not, so callers can fail closed.
type Store interface {
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

	Override(ctx context.Context, subject string) (Override, error)
	PutOverride(ctx context.Context, o Override) error
	// DeleteOverride removes an override; an absent one wraps ErrNotFound.
	DeleteOverride(ctx context.Context, subject string) error
	// Overrides returns every override, sorted by subject.
	Overrides(ctx context.Context) ([]Override, error)

	// Tag returns the last known record for key, e.g.
	// "docker.io/library/alpine:3.20".
	Tag(ctx context.Context, key string) (TagRecord, error)
	PutTag(ctx context.Context, key string, t TagRecord) error

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

func validateLink(repo string, dgst digest.Digest, roles []Context) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("link digest %q: %w: %w", dgst, ErrInvalid, err)
	}
	named, err := reference.ParseNamed(repo)
	if err != nil || !reference.IsNameOnly(named) || named.Name() != repo {
		return fmt.Errorf("link %s: %w: %q is not a fully qualified repository name", dgst, ErrInvalid, repo)
	}
	for _, c := range roles {
		if !c.Valid() {
			return fmt.Errorf("link %s: %w: role %q", dgst, ErrInvalid, c)
		}
	}
	return nil
}

func sortLinks(l *Links) {
	sort.Strings(l.Repos)
	sort.Slice(l.Roles, func(i, j int) bool { return l.Roles[i] < l.Roles[j] })
}

func sortVerdicts(vs []Verdict) {
	sort.Slice(vs, func(i, j int) bool {
		if !vs[i].Time.Equal(vs[j].Time) {
			return vs[i].Time.After(vs[j].Time)
		}
		if vs[i].RulesetID != vs[j].RulesetID {
			return vs[i].RulesetID < vs[j].RulesetID
		}
		return vs[i].Context < vs[j].Context
	})
}

func sortOverrides(list []Override) {
	sort.Slice(list, func(i, j int) bool { return list[i].Subject < list[j].Subject })
}
