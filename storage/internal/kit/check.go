package kit

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/internal/dcheck"
)

// ValidateLookup refuses a verdict look-up that could never match.
func ValidateLookup(dgst digest.Digest, rulesetID string, c storage.Context) error {
	if err := dcheck.Validate(dgst); err != nil {
		return fmt.Errorf("%q: %w: %w", dgst, storage.ErrInvalid, err)
	}
	if rulesetID == "" {
		return fmt.Errorf("%s: %w: empty ruleset id", dgst, storage.ErrInvalid)
	}
	if !c.Valid() {
		return fmt.Errorf("%s: %w: context %q", dgst, storage.ErrInvalid, c)
	}
	return nil
}

// VerdictField is where a verdict lives under its digest: the ruleset id
// and the context. Records of earlier releases live under the bare ruleset
// id, which no look-up asks for.
func VerdictField(rulesetID string, c storage.Context) string { return rulesetID + "|" + string(c) }

// ValidateLink refuses a link whose digest, repository or roles are
// malformed.
func ValidateLink(repo string, dgst digest.Digest, roles []storage.Context) error {
	if err := dcheck.Validate(dgst); err != nil {
		return fmt.Errorf("link digest %q: %w: %w", dgst, storage.ErrInvalid, err)
	}
	named, err := reference.ParseNamed(repo)
	if err != nil || !reference.IsNameOnly(named) || named.Name() != repo {
		return fmt.Errorf("link %s: %w: %q is not a fully qualified repository name", dgst, storage.ErrInvalid, repo)
	}
	for _, c := range roles {
		if !c.Valid() {
			return fmt.Errorf("link %s: %w: role %q", dgst, storage.ErrInvalid, c)
		}
	}
	return nil
}

// ValidateTagKey refuses an empty tag key.
func ValidateTagKey(key string) error {
	if key == "" {
		return fmt.Errorf("tag key: %w: empty", storage.ErrInvalid)
	}
	return nil
}

// ValidateLock refuses an empty key or a ttl under a millisecond.
func ValidateLock(key string, ttl time.Duration) error {
	if key == "" {
		return fmt.Errorf("lock: %w: empty key", storage.ErrInvalid)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("lock %s: %w: ttl %s", key, storage.ErrInvalid, ttl)
	}
	return nil
}

// DecodeVerdict decodes raw and checks it belongs to dgst, so a corrupted
// or misfiled value is an error, never another blob's verdict.
func DecodeVerdict(raw []byte, dgst digest.Digest) (storage.Verdict, error) {
	var v storage.Verdict
	if err := json.Unmarshal(raw, &v); err != nil {
		return storage.Verdict{}, fmt.Errorf("decode verdict: %w", err)
	}
	if v.Digest != dgst {
		return storage.Verdict{}, fmt.Errorf("stored verdict is for %s, not %s", v.Digest, dgst)
	}
	return v, nil
}

// DecodeVerdictIn is DecodeVerdict for a look-up in context c: a record
// of another context (or of none, from an earlier release) is absent, so
// the blob is scanned again rather than judged by how it was read before.
func DecodeVerdictIn(raw []byte, dgst digest.Digest, c storage.Context) (storage.Verdict, error) {
	v, err := DecodeVerdict(raw, dgst)
	if err != nil {
		return storage.Verdict{}, err
	}
	if v.Context != c {
		return storage.Verdict{}, fmt.Errorf("%w: stored verdict is in context %q, not %q", storage.ErrNotFound, v.Context, c)
	}
	return v, nil
}

// SortLinks sorts repositories and roles, as Links promises.
func SortLinks(l *storage.Links) {
	sort.Strings(l.Repos)
	sort.Slice(l.Roles, func(i, j int) bool { return l.Roles[i] < l.Roles[j] })
}

// SortVerdicts sorts newest first, then by ruleset and context.
func SortVerdicts(vs []storage.Verdict) {
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

// SortOverrides sorts by subject.
func SortOverrides(list []storage.Override) {
	sort.Slice(list, func(i, j int) bool { return list[i].Subject < list[j].Subject })
}
