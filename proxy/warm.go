package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/gate"
)

// WarmOptions list images the server keeps fetched and scanned: at start
// and then every Interval it asks the gate for each, in-process, as a pull
// would, so a big image never makes a client wait, a moved tag is scanned
// before anyone pulls it, and new rules rescan them ahead of need.
type WarmOptions struct {
	Images []string
	// Platforms ("os/arch[/variant]") are warmed from a multi-platform image.
	Platforms []string
	Interval  time.Duration
	// Timeout bounds one image's warm-up (fetch and scan of every platform).
	Timeout time.Duration
}

// WarmResult is the gate's decision on one image manifest warmed.
type WarmResult struct {
	Image    string // as given
	Platform string // "" for a single-platform image
	Digest   digest.Digest
	Decision gate.Decision
	Err      error // it failed before a decision (upstream unreachable, not found)
}

// Warm fetches and judges an image through the gate, as a pull does but
// in-process: its tag resolved upstream, its manifest fetched and, for an
// index, the manifest of each wanted platform, each judged (every blob
// fetched and scanned) within ctx. Decisions are recorded as events.
func (s *Server) Warm(ctx context.Context, image string, platforms []string) ([]WarmResult, error) {
	t, err := s.warmTarget(image)
	if err != nil {
		return nil, err
	}
	ev := event{UserAgent: "pullgate-warm/" + s.opts.Version, Image: t.Image()}
	if refused := s.admitName(ctx, t.Registry, t.Repo); refused != nil {
		d := s.gate.Judge(gate.Facts{NameRefused: refused})
		ev.Decision, ev.Reason = d.Outcome, d.Message
		s.record(ev)
		return []WarmResult{{Image: image, Decision: d}}, nil
	}
	a := s.askManifest(ctx, t, gate.ManifestTypes, s.warmHold(ctx), ev)
	if a.decision.Outcome == 0 {
		return []WarmResult{{Image: image, Digest: a.digest, Err: a.err}}, nil
	}
	if !gate.IsIndex(a.mediaType) || a.decision.Refused() {
		return []WarmResult{{Image: image, Digest: a.digest, Decision: a.decision}}, nil
	}
	idx, err := gate.ParseIndex(a.body)
	if err != nil {
		return nil, err
	}
	var out []WarmResult
	for _, p := range platforms {
		m, ok := gate.PickPlatform(idx, p)
		if !ok || slices.ContainsFunc(out, func(r WarmResult) bool { return r.Digest == m.Digest }) {
			continue
		}
		child := t
		child.Ref, child.Digest = m.Digest.String(), m.Digest
		ev.Image = child.Image()
		c := s.askManifest(ctx, child, gate.ManifestTypes, s.warmHold(ctx), ev)
		out = append(out, WarmResult{Image: image, Platform: p, Digest: m.Digest, Decision: c.decision, Err: decisionless(c)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("index of %s lists none of the platforms %v", image, platforms)
	}
	return out, nil
}

// decisionless is the error of an answer that failed before a decision.
func decisionless(a manifestAnswer) error {
	if a.decision.Outcome == 0 {
		return a.err
	}
	return nil
}

// warmTarget reads an image reference ("alpine", "ghcr.io/o/r:1",
// "x@sha256:…") as the request a client would make for it.
func (s *Server) warmTarget(image string) (target, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return target{}, fmt.Errorf("image %q: %w", image, err)
	}
	named = reference.TagNameOnly(named)
	t := target{Registry: canonicalRegistry(reference.Domain(named)), Repo: reference.Path(named), Kind: kindManifest}
	if !s.configured(t.Registry) {
		return target{}, fmt.Errorf("image %q: registry %s is not configured", image, t.Registry)
	}
	if d, ok := named.(reference.Digested); ok {
		t.Digest = d.Digest()
		t.Ref = t.Digest.String()
	} else if tg, ok := named.(reference.Tagged); ok {
		t.Ref = tg.Tag()
	}
	return t, nil
}

// warmHold is how long a warm-up waits for its scans: as long as it has.
func (s *Server) warmHold(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return s.opts.IngestTimeout
}

// keepWarm warms Options.Warm.Images at start and then every interval,
// until ctx ends. Replicas warming the same images share the work through
// the gate's leases.
func (s *Server) keepWarm(ctx context.Context) {
	w := s.opts.Warm
	for {
		for _, img := range w.Images {
			ictx, cancel := context.WithTimeout(ctx, w.Timeout)
			results, err := s.Warm(ictx, img, w.Platforms)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				s.log.Warn("warm failed", "image", img, "err", err)
			}
			for _, r := range results {
				s.logWarmed(ctx, img, r)
			}
		}
		t := time.NewTimer(w.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Server) logWarmed(ctx context.Context, img string, r WarmResult) {
	if r.Err != nil {
		s.log.Warn("warm failed", "image", img, "platform", r.Platform, "digest", r.Digest.String(), "err", r.Err)
		return
	}
	lvl := slog.LevelInfo
	if r.Decision.Refused() {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "warmed", "image", img, "platform", r.Platform, "digest", r.Digest.String(),
		"status", r.Decision.Word(), "reason", r.Decision.Message)
}
