package gate

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
)

// RepoPolicy is the publisher policy of one registry, checked before any
// scan: "know the author, prefer official images". Patterns are globs over
// the repository path ("library/*", "bitnami/*", "docker123321/*"); a deny
// match refuses, and when Allow is not empty a repository must match it.
type RepoPolicy struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// DigestSet answers whether a digest is on a list, such as the known-bad
// list of blobs that always block.
type DigestSet interface {
	Has(digest.Digest) bool
}

// OverrideLookup reads the operator's override on a subject (a digest or
// a repository name); storage.ErrNotFound when there is none.
type OverrideLookup func(subject string) (storage.Override, error)

func nameRefusal(kind Kind, msg string) *Refusal {
	return &Refusal{Outcome: verdict.Policy, Kind: kind, Message: msg}
}

// AdmitName refuses a repository that an operator denied, or that the
// registry's publisher policy does not admit. An operator's allow on the
// repository lifts the publisher policy for it and does nothing more: the
// content it serves is still judged by its digests.
func AdmitName(policy map[string]RepoPolicy, registry, repo string, override OverrideLookup) *Refusal {
	name := registry + "/" + repo
	o, err := override(name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nameRefusal(Unavailable, fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", name, err))
	case o.Action == storage.Deny:
		return nameRefusal(Denied, fmt.Sprintf("pullgate: %s denied by operator %s: %s", name, o.Actor, o.Reason))
	case o.Action == storage.Allow:
		return nil
	}
	return CheckPolicy(policy, registry, repo)
}

// DeniedByOperator refuses name when an operator denied that repository.
func DeniedByOperator(name string, override OverrideLookup) *Refusal {
	o, err := override(name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return nameRefusal(Unavailable, fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", name, err))
	case o.Action == storage.Deny:
		return nameRefusal(Denied, fmt.Sprintf("pullgate: %s denied by operator %s: %s", name, o.Actor, o.Reason))
	}
	return nil
}

// LinkedRefusal words the refusal of content because another repository
// that carries the same bytes is refused.
func LinkedRefusal(what, name string, r *Refusal) *Refusal {
	msg := fmt.Sprintf("pullgate: %s refused: the same content is in %s, which is refused (%s)", what, name, strings.TrimPrefix(r.Message, "pullgate: "))
	return nameRefusal(r.Kind, msg)
}

// CheckPolicy refuses a repository the registry's policy does not admit,
// saying which rule refused it.
func CheckPolicy(policy map[string]RepoPolicy, registry, repo string) *Refusal {
	p, ok := policy[registry]
	if !ok {
		return nil
	}
	for _, pat := range p.Deny {
		if globMatch(pat, repo) {
			return nameRefusal(Denied, fmt.Sprintf("pullgate: %s/%s refused by policy: repository matches deny pattern %q of %s", registry, repo, pat, registry))
		}
	}
	if len(p.Allow) == 0 {
		return nil
	}
	for _, pat := range p.Allow {
		if globMatch(pat, repo) {
			return nil
		}
	}
	return nameRefusal(Denied, fmt.Sprintf("pullgate: %s/%s refused by policy: repository is not on the allow list of %s", registry, repo, registry))
}

// globMatch matches a repository path against a pattern; "*" stays within
// one path component, and a trailing "/**" matches everything below.
func globMatch(pattern, repo string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/**"); ok {
		return repo == prefix || strings.HasPrefix(repo, prefix+"/")
	}
	ok, err := path.Match(pattern, repo)
	return err == nil && ok
}

// ValidatePolicy checks every pattern compiles, for config loading.
func ValidatePolicy(p map[string]RepoPolicy) error {
	for reg, rp := range p {
		for _, pat := range append(append([]string{}, rp.Allow...), rp.Deny...) {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("policy of %s: bad pattern %q: %w", reg, pat, err)
			}
		}
	}
	return nil
}
