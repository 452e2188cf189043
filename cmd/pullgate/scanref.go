package main

import (
	"context"
	"fmt"
	"io"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// looksLikeReference says whether an argument that is not a local path
// reads as an image reference ("alpine", "docker.io/library/alpine:3.20",
// "ghcr.io/o/r@sha256:…").
func looksLikeReference(arg string) bool {
	_, err := reference.ParseNormalizedNamed(arg)
	return err == nil
}

// reference fetches an image through the configured upstreams, as the gate
// would, and scans its config and every layer. An index is resolved to the
// manifest of the requested platform. A name the publisher policy (or an
// operator) refuses is refused before anything is fetched, as in the gate.
func (s *scanRun) reference(ctx context.Context, arg string) ([]scanReport, error) {
	named, err := reference.ParseNormalizedNamed(arg)
	if err != nil {
		return nil, err
	}
	named = reference.TagNameOnly(named)
	registry, repo := reference.Domain(named), reference.Path(named)
	up, ok := s.upstreams[registry]
	if !ok {
		return nil, fmt.Errorf("registry %s is not configured (add --upstream %s=URL, or it to the config's upstreams)", registry, registry)
	}
	if refused := s.admit(registry, repo); refused != nil {
		r := scanReport{Source: arg, Image: registry + "/" + repo}
		s.decide(&r, gate.Facts{NameRefused: refused})
		return []scanReport{r}, nil
	}
	ref := ""
	if d, ok := named.(reference.Digested); ok {
		ref = d.Digest().String()
	} else if t, ok := named.(reference.Tagged); ok {
		ref = t.Tag()
	}
	dgst, refs, err := s.imageManifest(ctx, up, repo, ref)
	if err != nil {
		return nil, err
	}
	r := scanReport{Source: arg, Image: registry + "/" + repo + "@" + dgst.String()}
	for _, d := range refs {
		body, _, err := up.Blob(ctx, repo, d.Digest)
		if err != nil {
			return nil, err
		}
		var src io.Reader = body
		if d.Size > 0 {
			src = io.LimitReader(body, d.Size+1)
		}
		b, err := s.blob(ctx, d.Noun(), d.Digest.String(), d.Digest, src)
		body.Close()
		if err != nil {
			return nil, err
		}
		r.Blobs = append(r.Blobs, b)
	}
	s.decide(&r, s.facts(&r, registry+"/"+repo, dgst))
	return []scanReport{r}, nil
}

// admit applies the operator's repository overrides (when there is a
// store) and the publisher policy to a name.
func (s *scanRun) admit(registry, repo string) *gate.Refusal {
	if s.overrides != nil {
		return gate.AdmitName(s.repoPolicy, registry, repo, s.overrides)
	}
	return gate.CheckPolicy(s.repoPolicy, registry, repo)
}

// imageManifest resolves ref to an image manifest (through an index, by
// the run's platform) and lists its blobs as the gate does.
func (s *scanRun) imageManifest(ctx context.Context, up *upstream.Registry, repo, ref string) (digest.Digest, []gate.Ref, error) {
	desc, err := up.Resolve(ctx, repo, ref, gate.ManifestTypes)
	if err != nil {
		return "", nil, err
	}
	body, desc, err := up.Manifest(ctx, repo, desc.Digest, gate.ManifestTypes)
	if err != nil {
		return "", nil, err
	}
	kind, err := gate.ManifestKind(body)
	if err != nil {
		return "", nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if gate.IsIndex(kind) {
		idx, err := gate.ParseIndex(body)
		if err != nil {
			return "", nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		picked, ok := gate.PickPlatform(idx, s.platform)
		if !ok {
			return "", nil, fmt.Errorf("index %s has no %s manifest", desc.Digest, s.platform)
		}
		if body, desc, err = up.Manifest(ctx, repo, picked.Digest, gate.ManifestTypes); err != nil {
			return "", nil, err
		}
		if kind, err = gate.ManifestKind(body); err != nil {
			return "", nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
	}
	if !gate.IsImageManifest(kind) {
		return "", nil, fmt.Errorf("manifest %s is not an image manifest", desc.Digest)
	}
	refs, err := gate.BlobsOf(body, s.maxLayers)
	if err != nil {
		return "", nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	return desc.Digest, refs, nil
}
