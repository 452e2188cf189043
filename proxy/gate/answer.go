package gate

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// ManifestAnswer is the gate's answer to a request for a manifest.
type ManifestAnswer struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte
	// Decision has no Outcome when it failed before a decision, and
	// Outcome Pending (not refused) for an image manifest served before
	// its judgment (StreamManifest).
	Decision Decision
	Err      error // what the client gets instead: a *Refusal, or a Decision's refusal
}

// AskManifest fetches a manifest (from the store, else upstream, verified)
// and has the gate decide on it, recording the decision as ev. The hold
// covers the whole answer: the upstream requests for the tag and the
// manifest (which may wait for a connection slot) as well as the scans, so
// a client always has its answer within it.
func (g *Gate) AskManifest(ctx context.Context, up *upstream.Registry, t Target, accept []string, hold time.Duration, ev events.Event) ManifestAnswer {
	return g.askManifest(ctx, up, t, accept, hold, ev, false)
}

// StreamManifest is AskManifest in stream mode: an image manifest is
// served as soon as what is already known does not refuse it (the name,
// the operator's overrides, the known-bad list, verdicts already stored),
// and the image is judged in the background (streamImage), its decision
// recorded as ev when it comes. Its layers are then streamed to clients
// while they are scanned, holding back their tails (StreamBlob), and its
// config waits for the image's decision (AwaitConfig). An index, and an
// image whose blobs all have verdicts, are answered as AskManifest does.
func (g *Gate) StreamManifest(ctx context.Context, up *upstream.Registry, t Target, accept []string, hold time.Duration, ev events.Event) ManifestAnswer {
	return g.askManifest(ctx, up, t, accept, hold, ev, true)
}

func (g *Gate) askManifest(ctx context.Context, up *upstream.Registry, t Target, accept []string, hold time.Duration, ev events.Event, stream bool) ManifestAnswer {
	start := time.Now()
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	desc, err := g.resolve(holdCtx, up, t, accept)
	if err != nil {
		return ManifestAnswer{Err: g.pastHold(ctx, holdCtx, t.Image(), err)}
	}
	body, mediaType, err := g.loadManifest(holdCtx, up, t, desc.Digest)
	if err != nil {
		return ManifestAnswer{Digest: desc.Digest, Err: g.pastHold(ctx, holdCtx, t.ImageAt(desc.Digest), err)}
	}
	a := ManifestAnswer{Digest: desc.Digest, MediaType: mediaType, Body: body}
	// Served only under a name upstream confirmed carries it, and only if
	// every name that carries it is admitted.
	links, err := g.manifestLinks(ctx, up, t, desc.Digest, mediaType, body)
	if err != nil {
		a.Err = err
		return a
	}
	if stream && IsImageManifest(mediaType) {
		if d, early := g.judgeEarly(holdCtx, up, t, a, links, ev); early {
			a.Decision = d
			if d.Outcome == verdict.Pending {
				return a // served early: the image flight records the decision
			}
			return g.answered(a, ev, start)
		}
	}
	a.Decision = g.judgeManifest(ctx, up, t, a, links, max(hold-time.Since(start), 0))
	return g.answered(a, ev, start)
}

// answered records a manifest's decision as ev and sets the refusal the
// client gets, if any.
func (g *Gate) answered(a ManifestAnswer, ev events.Event, start time.Time) ManifestAnswer {
	ev.Digest, ev.Decision, ev.Findings, ev.Reason = a.Digest, a.Decision.Outcome, a.Decision.Findings, a.Decision.Message
	ev.Latency = time.Since(start)
	g.opts.Events.Emit(ev)
	if a.Decision.Refused() {
		a.Err = a.Decision
	}
	return a
}

// judgeManifest gathers the facts on a manifest and decides.
func (g *Gate) judgeManifest(ctx context.Context, up *upstream.Registry, t Target, a ManifestAnswer, links storage.Links, hold time.Duration) Decision {
	if refused := g.admitLinked(ctx, t.Name(), t.ImageAt(a.Digest), links); refused != nil {
		// A deny on another name that carries the manifest refuses it,
		// unless an operator allowed this digest: the repair for a
		// re-push of an official image into a repository later denied.
		f := Facts{Subject: Image, Name: t.Name(), Digest: a.Digest, LinkedRefused: refused}
		g.gatherOverride(ctx, &f)
		if d := g.judge(f); d.Refused() {
			return d
		}
	}
	switch {
	case IsIndex(a.MediaType):
		f := Facts{Subject: Index, Name: t.Registry + "/" + t.Repo, Digest: a.Digest, Invalid: CheckIndex(a.Body), KnownBad: g.knownBad(a.Digest)}
		g.gatherOverride(ctx, &f)
		return g.judge(f)
	case IsImageManifest(a.MediaType):
		return g.judgeImage(ctx, up, t.Repo, a.Digest, a.Body, hold, scanner.Interactive, false)
	}
	return g.judge(Facts{Name: t.Registry + "/" + t.Repo, Digest: a.Digest,
		Invalid: fmt.Errorf("it has media type %q, which pullgate does not serve", cut(a.MediaType, 100))})
}

// pastHold turns a failure that came from the hold running out (while the
// client is still there) into the hold's own answer: 429 with Retry-After.
func (g *Gate) pastHold(ctx, holdCtx context.Context, image string, err error) error {
	if holdCtx.Err() == nil || ctx.Err() != nil {
		return err
	}
	msg := fmt.Sprintf("pullgate: %s: the upstream registry did not answer in time; retry in %s", image, g.opts.RetryAfter)
	return stillScanning(msg, g.opts.RetryAfter)
}

// AskName decides whether the name of t may be pulled at all, before
// anything is fetched: an operator's repository deny, then the publisher
// policy. A refusal is recorded as ev and returned; a name admitted gives
// a Decision that refuses nothing.
func (g *Gate) AskName(ctx context.Context, t Target, ev events.Event) Decision {
	refused := g.admit(ctx, t.Registry, t.Repo)
	if refused == nil {
		return Decision{}
	}
	d := g.judge(Facts{NameRefused: refused})
	ev.Decision, ev.Reason = d.Outcome, d.Message
	g.opts.Events.Emit(ev)
	return d
}

// AskBlob decides on the blob t.Digest asked for on its own under the
// repository of t: only under a name upstream confirmed carries it, never
// a manifest's bytes (a manifest is judged at the manifests endpoint,
// image by image), and only when judgeBlob lets it through. A refusal and
// an operator's allow are recorded as ev; a blob still scanning, or one
// upstream failed to send, is not (the manifest's request records the
// image's). The error is what the client gets instead of the blob.
func (g *Gate) AskBlob(ctx context.Context, up *upstream.Registry, t Target, hold time.Duration, ev events.Event) error {
	start := time.Now()
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	links, err := g.blobLinks(ctx, up, t)
	if err != nil {
		return err
	}
	switch isManifest, err := g.opts.Blobs.IsManifest(ctx, t.Digest); {
	case err != nil:
		g.log.Error("look up stored manifest", "digest", t.Digest.String(), "err", err)
		return storeUnavailable(fmt.Sprintf("read blob %s", t.Digest))
	case isManifest:
		return refusal(UnknownBlob, "pullgate: %s is a manifest: ask for it at /v2/%s/manifests/%s", t.Digest, t.Repo, t.Digest)
	}
	d := g.judgeBlob(ctx, holdCtx, up, t.Repo, t.Digest, links)
	if d.Kind == Denied || d.Outcome == verdict.Overridden {
		ev.Decision, ev.Findings, ev.Reason, ev.Latency = d.Outcome, d.Findings, d.Message, time.Since(start)
		g.opts.Events.Emit(ev)
	}
	if d.Refused() {
		return d
	}
	return nil
}
