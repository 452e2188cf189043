package proxy

import (
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
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

// checkPolicy refuses a repository the registry's policy does not admit,
// saying which rule refused it.
func (s *Server) checkPolicy(t target) error {
	p, ok := s.opts.Policy[t.Registry]
	if !ok {
		return nil
	}
	for _, pat := range p.Deny {
		if globMatch(pat, t.Repo) {
			return errDenied(fmt.Sprintf("pullgate: %s/%s refused by policy: repository matches deny pattern %q of %s", t.Registry, t.Repo, pat, t.Registry))
		}
	}
	if len(p.Allow) == 0 {
		return nil
	}
	for _, pat := range p.Allow {
		if globMatch(pat, t.Repo) {
			return nil
		}
	}
	return errDenied(fmt.Sprintf("pullgate: %s/%s refused by policy: repository is not on the allow list of %s", t.Registry, t.Repo, t.Registry))
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
