package proxy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"

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

// admitName refuses a repository that an operator denied, or that the
// registry's publisher policy does not admit. An operator's allow on the
// repository lifts the publisher policy for it and does nothing more: the
// content it serves is still judged by its digests.
func (s *Server) admitName(ctx context.Context, registry, repo string) error {
	return s.admitNameWith(registry, repo, func(name string) (storage.Override, error) {
		return s.opts.Verdicts.Override(ctx, name)
	})
}

func (s *Server) admitNameWith(registry, repo string, override func(string) (storage.Override, error)) error {
	name := registry + "/" + repo
	o, err := override(name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return errUnavailable(fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", name, err))
	case o.Action == storage.Deny:
		return errDenied(fmt.Sprintf("pullgate: %s denied by operator %s: %s", name, o.Actor, o.Reason))
	case o.Action == storage.Allow:
		return nil
	}
	return s.checkPolicy(registry, repo)
}

// deniedByOperator refuses name when an operator denied that repository.
func deniedByOperator(name string, override func(string) (storage.Override, error)) error {
	o, err := override(name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return errUnavailable(fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", name, err))
	case o.Action == storage.Deny:
		return errDenied(fmt.Sprintf("pullgate: %s denied by operator %s: %s", name, o.Actor, o.Reason))
	}
	return nil
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
func (s *Server) admitLinked(ctx context.Context, requested, what string, links storage.Links) error {
	override := func(name string) (storage.Override, error) { return s.opts.Verdicts.Override(ctx, name) }
	if len(links.Repos) > manyLinks {
		all, err := s.opts.Verdicts.Overrides(ctx)
		if err != nil {
			return errUnavailable(fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", what, err))
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
		if err := deniedByOperator(name, override); err != nil {
			e := asAPIError(err)
			msg := fmt.Sprintf("pullgate: %s refused: the same content is in %s, which is refused (%s)", what, name, strings.TrimPrefix(e.Message, "pullgate: "))
			if e.Code == errcode.ErrorCodeDenied {
				return errDenied(msg)
			}
			return errUnavailable(msg)
		}
	}
	return nil
}

// checkPolicy refuses a repository the registry's policy does not admit,
// saying which rule refused it.
func (s *Server) checkPolicy(registry, repo string) error {
	p, ok := s.opts.Policy[registry]
	if !ok {
		return nil
	}
	for _, pat := range p.Deny {
		if globMatch(pat, repo) {
			return errDenied(fmt.Sprintf("pullgate: %s/%s refused by policy: repository matches deny pattern %q of %s", registry, repo, pat, registry))
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
	return errDenied(fmt.Sprintf("pullgate: %s/%s refused by policy: repository is not on the allow list of %s", registry, repo, registry))
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
