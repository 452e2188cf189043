package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Gathering the facts Decide judges: overrides, the known-bad list and
// the verdicts of an image's blobs, ingesting those that have none under
// the current ruleset. Gathering stops where the precedence makes the rest
// moot (an override needs no scan; a blob that blocks alone blocks the
// image), and the decision itself is Decide's alone.

// judgeImage holds an image manifest of repo at up until every blob it
// names has a verdict under the current ruleset (or the hold runs out),
// and decides. Its scans run at prio: background for a prefetch, until a
// client comes to wait on them. With spool, its layers' ingests spool
// their bytes for clients streamed from them (stream mode).
func (g *Gate) judgeImage(ctx context.Context, up *upstream.Registry, repo string, dgst digest.Digest, body []byte, hold time.Duration, prio scanner.Priority, spool bool) Decision {
	f := Facts{Subject: Image, Name: up.Name() + "/" + repo, Digest: dgst, RetryAfter: g.opts.RetryAfter}
	if g.gatherOverride(ctx, &f) {
		return g.judge(f)
	}
	refs, err := BlobsOf(body, g.opts.MaxManifestLayers)
	if err != nil {
		f.Invalid = err
		return g.judge(f)
	}
	for i := range refs {
		refs[i].Prio, refs[i].Spool = prio, spool
	}
	f.Config = refs[0].Digest
	f.KnownBad = g.knownBad(append([]digest.Digest{dgst}, digestsOf(refs)...)...)
	if d := g.judge(f); d.Refused() && len(f.KnownBad) > 0 {
		return d // refused before anything is fetched
	}
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	// The image is decided on verdicts all under one ruleset, the one
	// current when they were all in: when the rules change while they are
	// gathered, they are gathered again (verdicts under the new rules are
	// looked up or scanned), and after rulesChanges changes the stale
	// verdicts refuse the image as transient (see Decide).
	for range rulesChanges {
		rid := g.Scanner().RulesetID()
		f.Blobs = g.gatherVerdicts(ctx, holdCtx, up, repo, refs)
		f.RulesetID = g.Scanner().RulesetID()
		if f.RulesetID == rid && !anyStale(f) {
			break
		}
		g.log.Info("rules changed while an image was judged; gathering its verdicts again", "image", f.Name+"@"+dgst.String())
	}
	g.refreshSay(ctx, &f, refs)
	return g.judge(f)
}

// refreshSay reads, at the moment of deciding, what an operator and the
// known-bad list say of the subject and (for an image) its blobs: a hold
// can last minutes, and a deny or a listing made while the verdicts were
// gathered applies to the answer still to be given, as a new rule does. An
// operator's allow made meanwhile applies too. For an image, one listing
// of the overrides gives both the manifest's own and its blobs' denies, so
// a warm manifest request costs one round trip to Redis for them whatever
// the number of layers.
func (g *Gate) refreshSay(ctx context.Context, f *Facts, refs []Ref) {
	f.Override, f.OverrideErr, f.BlobDenied = nil, nil, nil
	f.KnownBad = g.knownBad(append([]digest.Digest{f.Digest}, digestsOf(refs)...)...)
	if f.Subject != Image {
		g.gatherOverride(ctx, f)
		return
	}
	all, err := g.opts.Verdicts.Overrides(ctx)
	if err != nil {
		f.OverrideErr = fmt.Errorf("read the operator's overrides: %w", err)
		return
	}
	f.Override, f.BlobDenied = sayOn(all, f.Digest, refs)
}

// anyStale reports whether a verdict of f was gathered under a ruleset
// other than f.RulesetID.
func anyStale(f Facts) bool {
	for i := range f.Blobs {
		if stale(f, &f.Blobs[i]) {
			return true
		}
	}
	return false
}

// sayOn picks from all overrides the one on the image digest d and the
// denies on its blobs: a blob an operator denied refuses every image that
// carries it, as the known-bad list does.
func sayOn(all []storage.Override, d digest.Digest, refs []Ref) (*storage.Override, []storage.Override) {
	var own *storage.Override
	denied := map[string]storage.Override{}
	for _, o := range all {
		switch {
		case o.Subject == d.String():
			own = &o
		case o.Action == storage.Deny:
			denied[o.Subject] = o
		}
	}
	var out []storage.Override
	seen := map[digest.Digest]bool{}
	for _, r := range refs {
		if o, ok := denied[r.Digest.String()]; ok && !seen[r.Digest] {
			out = append(out, o)
		}
		seen[r.Digest] = true
	}
	return own, out
}

// judge is Decide under the policy in force.
func (g *Gate) judge(f Facts) Decision { return Decide(g.opts.Decision, f) }

// gatherVerdicts asks for the verdict of every blob at once, each shared
// with every other request for it, until all have answered or the hold
// runs out. A blob that blocks alone blocks the image, so the answer does
// not wait for the others; their scans finish in the background.
func (g *Gate) gatherVerdicts(ctx, holdCtx context.Context, up *upstream.Registry, repo string, refs []Ref) []BlobFact {
	type answer struct {
		i   int
		v   storage.Verdict
		err error
	}
	answers := make(chan answer, len(refs))
	facts := make([]BlobFact, len(refs))
	for i, ref := range refs {
		facts[i] = BlobFact{Ref: ref, State: Pending}
		go func() {
			v, err := g.verdict(holdCtx, up, repo, ref)
			answers <- answer{i, v, err}
		}()
	}
	for range refs {
		a := <-answers
		facts[a.i] = g.blobFact(ctx, refs[a.i], a.v, a.err)
		if b := facts[a.i]; b.State == Judged && b.Verdict.Status != storage.StatusError && g.refuses(b.Verdict) {
			break
		}
	}
	return facts
}

// blobFact is what one verdict look-up says: a verdict, or why there is
// none (the hold ran out, the client left, upstream or a store failed).
func (g *Gate) blobFact(ctx context.Context, ref Ref, v storage.Verdict, err error) BlobFact {
	switch {
	case err == nil:
		if !g.refuses(v) {
			g.Touch(ref.Digest)
		}
		return BlobFact{Ref: ref, Verdict: v, State: Judged}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return BlobFact{Ref: ref, State: Pending}
	case ctx.Err() != nil:
		return BlobFact{Ref: ref, State: Gone, Err: err}
	}
	return BlobFact{Ref: ref, State: Failed, Err: err}
}

// gatherOverride reads an operator's override on the digest itself (of an
// image manifest or a blob), which stands until the operator removes it.
// Repository overrides are not read here: a repository deny refuses in
// admitName, and a repository allow only lifts the publisher policy, so
// neither turns a blocked digest into a served one. It reports whether the
// override (or the failure to read it) decides without a scan.
func (g *Gate) gatherOverride(ctx context.Context, f *Facts) bool {
	o, err := g.opts.Verdicts.Override(ctx, f.Digest.String())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false
	case err != nil:
		f.OverrideErr = err
		return true
	}
	f.Override = &o
	return f.Subject == Image || o.Action == storage.Deny
}

// knownBad lists the digests that are on the known-bad list.
func (g *Gate) knownBad(ds ...digest.Digest) []digest.Digest {
	if g.opts.KnownBad == nil {
		return nil
	}
	var out []digest.Digest
	for _, d := range ds {
		if g.opts.KnownBad.Has(d) {
			out = append(out, d)
		}
	}
	return out
}

func digestsOf(refs []Ref) []digest.Digest {
	out := make([]digest.Digest, len(refs))
	for i, r := range refs {
		out[i] = r.Digest
	}
	return out
}

// refuses reports whether a blob's own verdict refuses it under the
// current policy (an error verdict always does): Decide on that verdict
// alone, as prefetch and rescan judge what they scanned.
func (g *Gate) refuses(v storage.Verdict) bool {
	return g.judge(Facts{Subject: Blob, Digest: v.Digest, Blobs: []BlobFact{{Ref: Ref{Digest: v.Digest, Context: v.Context}, Verdict: v}}}).Refused()
}

// rulesChanges is how many times a blob is judged again because the rules
// changed while it was being scanned, before the request is refused.
const rulesChanges = 3

// verdict returns a blob's verdict under the current ruleset, waiting for
// its ingest (shared with every other request for it) when there is none.
// A verdict whose scan ran under rules replaced meanwhile is stored under
// the ruleset it was scanned under (by the ingest) and never returned as
// current: the blob is judged again under the current rules.
func (g *Gate) verdict(ctx context.Context, up *upstream.Registry, repo string, ref Ref) (storage.Verdict, error) {
	for range rulesChanges {
		v, err := g.verdictOnce(ctx, up, repo, ref)
		if err != nil || v.RulesetID == g.Scanner().RulesetID() {
			return v, err
		}
		g.log.Info("rules changed during a scan; judging again under the current rules",
			"digest", ref.Digest.String(), "scanned_under", v.RulesetID)
	}
	return storage.Verdict{}, fmt.Errorf("%w: the rules changed %d times while %s %s was being scanned", errTransient, rulesChanges, ref.Noun(), ref.Digest)
}

func (g *Gate) verdictOnce(ctx context.Context, up *upstream.Registry, repo string, ref Ref) (storage.Verdict, error) {
	rid := g.Scanner().RulesetID()
	v, err := g.opts.Verdicts.Verdict(ctx, ref.Digest, rid, ref.Context)
	switch {
	case err == nil && g.usable(ctx, v):
		g.metrics.VerdictCache(true)
		return v, nil
	case err != nil && ctx.Err() == nil && !errors.Is(err, storage.ErrNotFound):
		// Fail closed: without the verdict store nothing is known.
		return storage.Verdict{}, fmt.Errorf("%w: verdict store: %v", errTransient, err)
	}
	// Not found, or the hold ran out during the look-up: the ingest starts
	// either way (it reads the verdict again under its own deadline), so a
	// retry finds it done, and the caller answers "still scanning".
	g.metrics.VerdictCache(false)
	info := FlightInfo{Digest: ref.Digest, Registry: up.Name(), Repo: repo, Kind: ref.Noun(), Context: ref.Context, Size: ref.Size}
	fl := g.flights.start(info, ref.Prio, func(fl *flight) (storage.Verdict, error) { return g.ingest(fl, up, repo, ref) })
	return fl.wait(ctx)
}

// blobFacts gathers what Decide needs to judge a blob asked for on
// its own, under the name of t.
func (g *Gate) blobFacts(ctx, holdCtx context.Context, up *upstream.Registry, repo string, dgst digest.Digest, links storage.Links) Facts {
	f := Facts{Subject: Blob, Name: up.Name() + "/" + repo, Digest: dgst, RetryAfter: g.opts.RetryAfter}
	if g.gatherOverride(ctx, &f) {
		return f
	}
	f.KnownBad = g.knownBad(dgst)
	if d := g.judge(f); len(f.KnownBad) > 0 && f.Override == nil && d.Refused() {
		return f // refused before anything is fetched
	}
	for range rulesChanges {
		rid := g.Scanner().RulesetID()
		f.Blobs = g.blobVerdicts(ctx, holdCtx, up, repo, dgst, links)
		f.RulesetID = g.Scanner().RulesetID()
		if f.RulesetID == rid && !anyStale(f) {
			break
		}
	}
	g.refreshSay(ctx, &f, nil)
	return f
}

// judgeBlob decides on a blob of repo at up asked for on its own, ingesting
// it (within holdCtx) in each role links give it; ctx is the client's. An
// operator's allow over content that does not pass fetches the blob as it
// is (digest verified) and keeps it, since the override, not a verdict,
// lets it be served.
func (g *Gate) judgeBlob(ctx, holdCtx context.Context, up *upstream.Registry, repo string, dgst digest.Digest, links storage.Links) Decision {
	f := g.blobFacts(ctx, holdCtx, up, repo, dgst, links)
	d := g.judge(f)
	if d.Kind == Denied && f.Override == nil {
		// Looked up only when the blob is refused, so clean pulls pay
		// nothing for it.
		f.ImageAllow = g.imageAllow(ctx, f.Name, dgst)
		d = g.judge(f)
	}
	if d.Outcome == verdict.Overridden && !d.Refused() {
		if err := g.fetchOverridden(holdCtx, up, repo, Ref{Digest: dgst, Size: -1}); err != nil {
			what := fmt.Sprintf("blob %s of %s/%s", dgst, up.Name(), repo)
			return Decision{Outcome: verdict.UpstreamFailed, Kind: Upstream, Message: fmt.Sprintf("pullgate: %s refused: %v", what, err),
				Where: "pullgate: " + what, Cause: err}
		}
	}
	return d
}

// blobVerdicts gathers a blob's verdicts in every context a manifest names
// it in (or as an artifact when none does). A blocked verdict under the
// current ruleset in any context, records of earlier releases included,
// is enough: the same bytes are not served by asking for them another way.
// A scan error in a role refuses nothing by itself (see Decide), so
// only findings stop the gathering early.
func (g *Gate) blobVerdicts(ctx, holdCtx context.Context, up *upstream.Registry, repo string, dgst digest.Digest, links storage.Links) []BlobFact {
	rid := g.Scanner().RulesetID()
	unknown := Ref{Digest: dgst, Size: -1}
	stored, err := g.opts.Verdicts.Verdicts(holdCtx, dgst)
	switch {
	case err != nil && holdCtx.Err() != nil:
		return []BlobFact{g.blobFact(ctx, unknown, storage.Verdict{}, fmt.Errorf("look up verdicts for %s: %w", dgst, holdCtx.Err()))}
	case err != nil:
		return []BlobFact{g.blobFact(ctx, unknown, storage.Verdict{}, fmt.Errorf("%w: verdict store: %v", errTransient, err))}
	}
	for _, v := range stored {
		if v.RulesetID == rid && v.Status != storage.StatusError && g.refuses(v) {
			return []BlobFact{{Ref: Ref{Digest: dgst, Size: -1, Context: v.Context}, Verdict: v, State: Judged}}
		}
	}
	contexts := links.Roles
	if len(contexts) == 0 {
		contexts = []storage.Context{storage.ContextArtifact}
	}
	var facts []BlobFact
	for _, c := range contexts {
		ref := Ref{Digest: dgst, Size: -1, Context: c}
		v, err := g.verdict(holdCtx, up, repo, ref)
		b := g.blobFact(ctx, ref, v, err)
		facts = append(facts, b)
		if b.State != Judged || (v.Status != storage.StatusError && g.refuses(v)) {
			break
		}
	}
	return facts
}

// imageAllow returns an operator's allow on an image, by manifest digest,
// whose stored manifest lists the blob dgst and which is linked under name
// (any name when name is empty), or nil. An image allow covers its blobs
// by this relation, not by copies: only under the names that carry the
// image, and only while the allow stands. A failure to read is logged and
// covers nothing: the blob stays refused.
func (g *Gate) imageAllow(ctx context.Context, name string, dgst digest.Digest) *storage.Override {
	all, err := g.opts.Verdicts.Overrides(ctx)
	if err != nil {
		g.log.Warn("read overrides for an image allow", "digest", dgst.String(), "err", err)
		return nil
	}
	for _, o := range all {
		m, err := digest.Parse(o.Subject)
		if o.Action != storage.Allow || o.Image != "" || err != nil || m == dgst {
			continue
		}
		refs, ok := g.ImageBlobs(ctx, m)
		if !ok || !slices.ContainsFunc(refs, func(r Ref) bool { return r.Digest == dgst }) {
			continue
		}
		if name != "" {
			links, err := g.opts.Verdicts.Links(ctx, m)
			if err != nil {
				g.log.Warn("read the links of an allowed image", "image", m.String(), "err", err)
				continue
			}
			if !links.Has(name) {
				continue
			}
		}
		return &o
	}
	return nil
}
