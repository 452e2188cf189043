package proxy

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/gate"
)

// DefaultRegistry is where a request goes when it names no registry:
// the Docker daemon's registry-mirrors only ever send Docker Hub pulls.
const DefaultRegistry = "docker.io"

// kind is what a /v2/ path asks for.
type kind int

const (
	kindManifest kind = iota
	kindBlob
	kindTags
)

// target is one parsed distribution API request: which registry, which
// repository in it, and which manifest, blob or tag list.
type target struct {
	gate.Target
	Kind kind
}

var (
	anchoredTag = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)
	// anchoredPath is a repository path inside a registry (no domain):
	// lower-case components joined by "/", as distribution defines them.
	anchoredPath = regexp.MustCompile(`^` + pathComponent + `(?:/` + pathComponent + `)*$`)
)

const pathComponent = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`

// maxNameLength bounds a repository name (distribution's limit).
const maxNameLength = 255

// parseTarget splits /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>
// and /v2/<name>/tags/list, picks the registry, and normalizes the name.
// The registry comes from containerd's ?ns= parameter, else from a first path
// component naming a configured registry, else DefaultRegistry; registries
// that are not configured are refused so pullgate is never an open proxy.
func parseTarget(r *http.Request, configured func(string) bool) (target, error) {
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	var t target
	var name string
	switch {
	case strings.HasSuffix(p, "/tags/list"):
		t.Kind = kindTags
		name = strings.TrimSuffix(p, "/tags/list")
	default:
		i := strings.LastIndex(p, "/manifests/")
		j := strings.LastIndex(p, "/blobs/")
		switch {
		case i > 0 && i > j:
			t.Kind = kindManifest
			name, t.Ref = p[:i], p[i+len("/manifests/"):]
		case j > 0:
			t.Kind = kindBlob
			name, t.Ref = p[:j], p[j+len("/blobs/"):]
		default:
			return t, errNotFound("unknown API path")
		}
	}

	registry := DefaultRegistry
	// In gateway mode clients reach pullgate under the registry's own name
	// (registry-1.docker.io, ghcr.io), and the Host says which one.
	if h := canonicalRegistry(hostOnly(r.Host)); h != "" && configured(h) {
		registry = h
	}
	if ns := r.URL.Query().Get("ns"); ns != "" {
		registry = canonicalRegistry(ns)
		if !configured(registry) {
			return t, errDenied(fmt.Sprintf("pullgate: registry %q is not configured here", ns))
		}
	} else if first, rest, ok := strings.Cut(name, "/"); ok && looksLikeHost(first) {
		registry = canonicalRegistry(first)
		if !configured(registry) {
			return t, errDenied(fmt.Sprintf("pullgate: registry %q is not configured here", first))
		}
		name = rest
	}
	if !configured(registry) {
		return t, errDenied(fmt.Sprintf("pullgate: registry %q is not configured here", registry))
	}
	t.Registry = registry

	if len(name) == 0 || len(name) > maxNameLength || !anchoredPath.MatchString(name) {
		return t, errNameInvalid(name)
	}
	if registry == "docker.io" && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	t.Repo = name

	switch t.Kind {
	case kindBlob:
		d, err := digest.Parse(t.Ref)
		if err != nil {
			return t, errDigestInvalid(t.Ref)
		}
		t.Digest = d
	case kindManifest:
		if d, err := digest.Parse(t.Ref); err == nil {
			t.Digest = d
		} else if !anchoredTag.MatchString(t.Ref) {
			return t, errManifestInvalidRef(t.Ref)
		}
	}
	return t, nil
}

// looksLikeHost reports whether a first path component is a registry host
// (as in docker.io/library/alpine) rather than a Docker Hub namespace.
func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// hostOnly drops the port from a Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// canonicalRegistry is a registry's name as pullgate keys it
// (gate.CanonicalRegistry).
func canonicalRegistry(s string) string { return gate.CanonicalRegistry(s) }
