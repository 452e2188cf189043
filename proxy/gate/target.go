package gate

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Target names what a request asks for: a repository of a configured
// registry, and a tag or digest in it.
type Target struct {
	Registry string        // "docker.io"
	Repo     string        // repository path in that registry: "library/alpine"
	Ref      string        // tag or digest (manifests)
	Digest   digest.Digest // set when Ref is a digest, and for blobs
}

// Name is the repository as pullgate names it: docker.io/library/alpine.
func (t Target) Name() string { return t.Registry + "/" + t.Repo }

// Image names the target as people write it: docker.io/library/alpine:3.20
// or docker.io/library/alpine@sha256:….
func (t Target) Image() string {
	if t.Digest != "" {
		return t.Name() + "@" + t.Digest.String()
	}
	if t.Ref != "" {
		return t.Name() + ":" + t.Ref
	}
	return t.Name()
}

// ImageAt names the repository at a manifest digest.
func (t Target) ImageAt(d digest.Digest) string { return t.Name() + "@" + d.String() }

// CanonicalRegistry maps Docker Hub's aliases to one name.
func CanonicalRegistry(s string) string {
	s = strings.ToLower(s)
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return s
}
