package proxy

import (
	"context"
	"fmt"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
)

// RepoPolicy is the publisher policy of one registry (see gate.RepoPolicy).
type RepoPolicy = gate.RepoPolicy

// DigestSet answers whether a digest is on a list (see gate.DigestSet).
type DigestSet = gate.DigestSet

// ValidatePolicy checks every pattern compiles, for config loading.
func ValidatePolicy(p map[string]RepoPolicy) error { return gate.ValidatePolicy(p) }

// admitName refuses a repository that an operator denied, or that the
// registry's publisher policy does not admit (gate.AdmitName).
func (s *Server) admitName(ctx context.Context, registry, repo string) *gate.Refusal {
	return gate.AdmitName(s.opts.Policy, registry, repo, s.overrideLookup(ctx))
}

func (s *Server) overrideLookup(ctx context.Context) gate.OverrideLookup {
	return func(name string) (storage.Override, error) { return s.opts.Verdicts.Override(ctx, name) }
}

// manyLinks is how many other names a digest may have before their
// overrides are read in one request (all overrides at once) rather than one
// request each.
const manyLinks = 4

// admitLinked refuses a manifest that is also carried by a repository an
// operator denied: a denied image asked for by digest under another name is
// the same bytes. requested is the name the client used, already admitted.
// The publisher policy is not applied to the other names: under a name it
// admits and upstream confirmed, the image was published by a publisher it
// trusts, and re-pushes are common (docker tag alpine someone/alpine), so
// a policy tightened after a pull would refuse official images.
func (s *Server) admitLinked(ctx context.Context, requested, what string, links storage.Links) *gate.Refusal {
	override := s.overrideLookup(ctx)
	if len(links.Repos) > manyLinks {
		all, err := s.opts.Verdicts.Overrides(ctx)
		if err != nil {
			return &gate.Refusal{Outcome: verdict.Policy, Kind: gate.Unavailable,
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
		if r := gate.DeniedByOperator(name, override); r != nil {
			return gate.LinkedRefusal(what, name, r)
		}
	}
	return nil
}
