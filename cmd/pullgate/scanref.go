package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/distribution/reference"

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
// manifest of the requested platform.
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
	ref := ""
	if d, ok := named.(reference.Digested); ok {
		ref = d.Digest().String()
	} else if t, ok := named.(reference.Tagged); ok {
		ref = t.Tag()
	}
	desc, err := up.Resolve(ctx, repo, ref, upstream.DefaultAccept)
	if err != nil {
		return nil, err
	}
	body, desc, err := up.Manifest(ctx, repo, desc.Digest, upstream.DefaultAccept)
	if err != nil {
		return nil, err
	}
	var m ociManifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	image := registry + "/" + repo + "@" + desc.Digest.String()
	if len(m.Manifests) > 0 {
		goos, arch, _ := strings.Cut(s.platform, "/")
		var picked *ociDescriptor
		for i, d := range m.Manifests {
			if d.Platform != nil && d.Platform.OS == goos && d.Platform.Architecture == arch {
				picked = &m.Manifests[i]
				break
			}
		}
		if picked == nil {
			return nil, fmt.Errorf("index %s has no %s manifest", desc.Digest, s.platform)
		}
		if body, desc, err = up.Manifest(ctx, repo, picked.Digest, upstream.DefaultAccept); err != nil {
			return nil, err
		}
		m = ociManifest{}
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		image = registry + "/" + repo + "@" + desc.Digest.String()
	}
	if m.Config.Digest == "" {
		return nil, fmt.Errorf("manifest %s is not an image manifest", desc.Digest)
	}
	r := scanReport{Source: arg, Image: image}
	for i, d := range append([]ociDescriptor{m.Config}, m.Layers...) {
		kind := "layer"
		if i == 0 {
			kind = "config"
		}
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%s %d: %w", kind, i, err)
		}
		if len(d.URLs) > 0 {
			return nil, fmt.Errorf("layer %s is a foreign layer (urls), which pullgate does not fetch", d.Digest)
		}
		body, _, err := up.Blob(ctx, repo, d.Digest)
		if err != nil {
			return nil, err
		}
		var src io.Reader = body
		if d.Size > 0 {
			src = io.LimitReader(body, d.Size+1)
		}
		b, err := s.blob(ctx, kind, d.Digest.String(), d.Digest, src)
		body.Close()
		if err != nil {
			return nil, err
		}
		r.Blobs = append(r.Blobs, b)
	}
	s.decide(&r)
	return []scanReport{r}, nil
}
