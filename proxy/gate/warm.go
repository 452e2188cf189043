package gate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/events"
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
	Decision Decision
	Err      error // it failed before a decision (upstream unreachable, not found)
}

// Warm fetches and judges an image through the gate, as a pull does but
// in-process: its tag resolved upstream, its manifest fetched and, for an
// index, the manifest of each wanted platform, each judged (every blob
// fetched and scanned) within ctx. Decisions are recorded as events.
func (g *Gate) Warm(ctx context.Context, image string, platforms []string) ([]WarmResult, error) {
	t, err := g.warmTarget(image)
	if err != nil {
		return nil, err
	}
	ev := events.Event{UserAgent: "pullgate-warm/" + g.opts.Version, Image: t.Image()}
	if d := g.AskName(ctx, t, ev); d.Refused() {
		return []WarmResult{{Image: image, Decision: d}}, nil
	}
	up := g.opts.Upstreams[t.Registry]
	a := g.AskManifest(ctx, up, t, ManifestTypes, g.warmHold(ctx), ev)
	if a.Decision.Outcome == 0 {
		return []WarmResult{{Image: image, Digest: a.Digest, Err: a.Err}}, nil
	}
	if !IsIndex(a.MediaType) || a.Decision.Refused() {
		return []WarmResult{{Image: image, Digest: a.Digest, Decision: a.Decision}}, nil
	}
	idx, err := ParseIndex(a.Body)
	if err != nil {
		return nil, err
	}
	var out []WarmResult
	for _, p := range platforms {
		m, ok := PickPlatform(idx, p)
		if !ok || slices.ContainsFunc(out, func(r WarmResult) bool { return r.Digest == m.Digest }) {
			continue
		}
		child := t
		child.Ref, child.Digest = m.Digest.String(), m.Digest
		ev.Image = child.Image()
		c := g.AskManifest(ctx, up, child, ManifestTypes, g.warmHold(ctx), ev)
		out = append(out, WarmResult{Image: image, Platform: p, Digest: m.Digest, Decision: c.Decision, Err: decisionless(c)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("index of %s lists none of the platforms %v", image, platforms)
	}
	return out, nil
}

// decisionless is the error of an answer that failed before a decision.
func decisionless(a ManifestAnswer) error {
	if a.Decision.Outcome == 0 {
		return a.Err
	}
	return nil
}

// warmTarget reads an image reference ("alpine", "ghcr.io/o/r:1",
// "x@sha256:…") as the request a client would make for it.
func (g *Gate) warmTarget(image string) (Target, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return Target{}, fmt.Errorf("image %q: %w", image, err)
	}
	named = reference.TagNameOnly(named)
	t := Target{Registry: CanonicalRegistry(reference.Domain(named)), Repo: reference.Path(named)}
	if g.opts.Upstreams[t.Registry] == nil {
		return Target{}, fmt.Errorf("image %q: registry %s is not configured", image, t.Registry)
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
func (g *Gate) warmHold(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return g.opts.IngestTimeout
}

// keepWarm warms Options.Warm.Images at start and then every interval,
// until ctx ends. Replicas warming the same images share the work through
// the gate's leases.
func (g *Gate) keepWarm(ctx context.Context) {
	w := g.opts.Warm
	for {
		for _, img := range w.Images {
			ictx, cancel := context.WithTimeout(ctx, w.Timeout)
			results, err := g.Warm(ictx, img, w.Platforms)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				g.log.Warn("warm failed", "image", img, "err", err)
			}
			for _, r := range results {
				g.logWarmed(ctx, img, r)
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

func (g *Gate) logWarmed(ctx context.Context, img string, r WarmResult) {
	if r.Err != nil {
		g.log.Warn("warm failed", "image", img, "platform", r.Platform, "digest", r.Digest.String(), "err", r.Err)
		return
	}
	lvl := slog.LevelInfo
	if r.Decision.Refused() {
		lvl = slog.LevelWarn
	}
	g.log.Log(ctx, lvl, "warmed", "image", img, "platform", r.Platform, "digest", r.Digest.String(),
		"status", r.Decision.Word(), "reason", r.Decision.Message)
}
