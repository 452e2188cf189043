package gate

import (
	"context"
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

// deniedByOperator refuses name when an operator denied that repository.
func deniedByOperator(name string, override OverrideLookup) *Refusal {
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

// linkedRefusal words the refusal of content because another repository
// that carries the same bytes is refused.
func linkedRefusal(what, name string, r *Refusal) *Refusal {
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

// admit refuses a repository that an operator denied, or that the
// registry's publisher policy does not admit (see AdmitName).
func (g *Gate) admit(ctx context.Context, registry, repo string) *Refusal {
	return AdmitName(*g.policy.Load(), registry, repo, g.overrideLookup(ctx))
}

// SetPolicy replaces the publisher policy (a configuration reload); the
// next request is admitted under the new one.
func (g *Gate) SetPolicy(p map[string]RepoPolicy) { g.policy.Store(&p) }

func (g *Gate) overrideLookup(ctx context.Context) OverrideLookup {
	return func(name string) (storage.Override, error) { return g.opts.Verdicts.Override(ctx, name) }
}

// ManyLinks is how many other names a digest may have before their
// overrides are read in one request (all overrides at once) rather than one
// request each.
const ManyLinks = 4

// admitLinked refuses a manifest that is also carried by a repository an
// operator denied: a denied image asked for by digest under another name is
// the same bytes. requested is the name the client used, already admitted.
// The publisher policy is not applied to the other names: under a name it
// admits and upstream confirmed, the image was published by a publisher it
// trusts, and re-pushes are common (docker tag alpine someone/alpine), so
// a policy tightened after a pull would refuse official images.
func (g *Gate) admitLinked(ctx context.Context, requested, what string, links storage.Links) *Refusal {
	override := g.overrideLookup(ctx)
	if len(links.Repos) > ManyLinks {
		all, err := g.opts.Verdicts.Overrides(ctx)
		if err != nil {
			return &Refusal{Outcome: verdict.Policy, Kind: Unavailable,
				Message: fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", what, err)}
		}
		by := make(map[string]storage.Override, len(all))
		for _, o := range all {
			by[o.Subject] = o
		}
		override = func(name string) (storage.Override, error) {
			if o, ok := by[name]; ok {
				return o, nil
			}
			return storage.Override{}, storage.ErrNotFound
		}
	}
	for _, name := range links.Repos {
		if name == requested {
			continue
		}
		if r := deniedByOperator(name, override); r != nil {
			return linkedRefusal(what, name, r)
		}
	}
	return nil
}
