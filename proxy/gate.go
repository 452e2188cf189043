package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// blobRef is a blob the gate must decide on, in the context it is read in.
type blobRef = gate.Ref

// The operator's side reads stored image manifests with these.
const (
	mediaTypeOCIManifest    = gate.MediaTypeOCIManifest
	mediaTypeDockerManifest = gate.MediaTypeDockerManifest
)

// blobsOf lists the blobs of an image manifest (gate.BlobsOf).
func (s *Server) blobsOf(body []byte) ([]blobRef, error) {
	return gate.BlobsOf(body, s.opts.MaxManifestLayers)
}

// Gathering the facts gate.Decide judges: overrides, the known-bad list and
// the verdicts of an image's blobs, ingesting those that have none under
// the current ruleset. Gathering stops where the precedence makes the rest
// moot (an override needs no scan; a blob that blocks alone blocks the
// image), and the decision itself is gate.Decide's alone.

// decide holds an image manifest until every blob it names has a verdict
// under the current ruleset (or the hold runs out), and decides.
func (s *Server) decide(ctx context.Context, up *upstream.Registry, t target, dgst digest.Digest, body []byte, hold time.Duration) gate.Decision {
	f := gate.Facts{Subject: gate.Image, Name: t.Registry + "/" + t.Repo, Digest: dgst, RetryAfter: s.opts.RetryAfter}
	if s.gatherOverride(ctx, &f) {
		return s.judge(f)
	}
	refs, err := s.blobsOf(body)
	if err != nil {
		f.Invalid = err
		return s.judge(f)
	}
	f.Config = refs[0].Digest
	f.KnownBad = s.knownBad(append([]digest.Digest{dgst}, digestsOf(refs)...)...)
	if d := s.judge(f); len(f.KnownBad) > 0 && d.Refused() {
		return d // refused before anything is fetched
	}
	f.Blobs = s.gatherVerdicts(ctx, up, t.Repo, refs, hold)
	return s.judge(f)
}

// judge is gate.Decide under the policy in force.
func (s *Server) judge(f gate.Facts) gate.Decision { return gate.Decide(s.opts.Decision, f) }

// gatherVerdicts asks for the verdict of every blob at once, each shared
// with every other request for it, until all have answered or the hold
// runs out. A blob that blocks alone blocks the image, so the answer does
// not wait for the others; their scans finish in the background.
func (s *Server) gatherVerdicts(ctx context.Context, up *upstream.Registry, repo string, refs []blobRef, hold time.Duration) []gate.BlobFact {
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	type answer struct {
		i   int
		v   storage.Verdict
		err error
	}
	answers := make(chan answer, len(refs))
	facts := make([]gate.BlobFact, len(refs))
	for i, ref := range refs {
		facts[i] = gate.BlobFact{Ref: ref, State: gate.Pending}
		go func() {
			v, err := s.verdict(holdCtx, up, repo, ref)
			answers <- answer{i, v, err}
		}()
	}
	for range refs {
		a := <-answers
		facts[a.i] = s.blobFact(ctx, refs[a.i], a.v, a.err)
		if b := facts[a.i]; b.State == gate.Judged && b.Verdict.Status != storage.StatusError && s.blobBlocked(b.Verdict) {
			break
		}
	}
	return facts
}

// blobFact is what one verdict look-up says: a verdict, or why there is
// none (the hold ran out, the client left, upstream or a store failed).
func (s *Server) blobFact(ctx context.Context, ref blobRef, v storage.Verdict, err error) gate.BlobFact {
	switch {
	case err == nil:
		if !s.blobBlocked(v) {
			s.touch(ref.Digest)
		}
		return gate.BlobFact{Ref: ref, Verdict: v, State: gate.Judged}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return gate.BlobFact{Ref: ref, State: gate.Pending}
	case ctx.Err() != nil:
		return gate.BlobFact{Ref: ref, State: gate.Gone, Err: err}
	}
	return gate.BlobFact{Ref: ref, State: gate.Failed, Err: err}
}

// gatherOverride reads an operator's override on the digest itself (of an
// image manifest or a blob), which stands until the operator removes it.
// Repository overrides are not read here: a repository deny refuses in
// admitName, and a repository allow only lifts the publisher policy, so
// neither turns a blocked digest into a served one. It reports whether the
// override (or the failure to read it) decides without a scan.
func (s *Server) gatherOverride(ctx context.Context, f *gate.Facts) bool {
	o, err := s.opts.Verdicts.Override(ctx, f.Digest.String())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false
	case err != nil:
		f.OverrideErr = err
		return true
	}
	f.Override = &o
	return f.Subject == gate.Image || o.Action == storage.Deny
}

// knownBad lists the digests that are on the known-bad list.
func (s *Server) knownBad(ds ...digest.Digest) []digest.Digest {
	if s.opts.KnownBad == nil {
		return nil
	}
	var out []digest.Digest
	for _, d := range ds {
		if s.opts.KnownBad.Has(d) {
			out = append(out, d)
		}
	}
	return out
}

func digestsOf(refs []blobRef) []digest.Digest {
	out := make([]digest.Digest, len(refs))
	for i, r := range refs {
		out[i] = r.Digest
	}
	return out
}

// blobBlocked reports whether a blob's own verdict refuses it under the
// current policy (an error verdict always does).
func (s *Server) blobBlocked(v storage.Verdict) bool { return gate.BlobBlocked(s.opts.Decision, v) }

// rulesChanges is how many times a blob is judged again because the rules
// changed while it was being scanned, before the request is refused.
const rulesChanges = 3

// verdict returns a blob's verdict under the current ruleset, waiting for
// its ingest (shared with every other request for it) when there is none.
// A verdict whose scan ran under rules replaced meanwhile is stored under
// the ruleset it was scanned under (by the ingest) and never returned as
// current: the blob is judged again under the current rules.
func (s *Server) verdict(ctx context.Context, up *upstream.Registry, repo string, ref blobRef) (storage.Verdict, error) {
	for range rulesChanges {
		v, err := s.verdictOnce(ctx, up, repo, ref)
		if err != nil || v.RulesetID == s.scanner().RulesetID() {
			return v, err
		}
		s.log.Info("rules changed during a scan; judging again under the current rules",
			"digest", ref.Digest.String(), "scanned_under", v.RulesetID)
	}
	return storage.Verdict{}, fmt.Errorf("%w: the rules changed %d times while %s %s was being scanned", errTransient, rulesChanges, ref.Noun(), ref.Digest)
}

func (s *Server) verdictOnce(ctx context.Context, up *upstream.Registry, repo string, ref blobRef) (storage.Verdict, error) {
	rid := s.scanner().RulesetID()
	v, err := s.opts.Verdicts.Verdict(ctx, ref.Digest, rid, ref.Context)
	switch {
	case err == nil && s.usable(ctx, v):
		s.metrics.verdictCache(true)
		return v, nil
	case err != nil && ctx.Err() == nil && !errors.Is(err, storage.ErrNotFound):
		// Fail closed: without the verdict store nothing is known.
		return storage.Verdict{}, fmt.Errorf("%w: verdict store: %v", errTransient, err)
	}
	// Not found, or the hold ran out during the look-up: the ingest starts
	// either way (it reads the verdict again under its own deadline), so a
	// retry finds it done, and the caller answers "still scanning".
	s.metrics.verdictCache(false)
	info := FlightInfo{Digest: ref.Digest, Registry: up.Name(), Repo: repo, Kind: ref.Noun(), Context: ref.Context, Size: ref.Size}
	fl := s.flights.start(info, ref.Prio, func(fl *flight) (storage.Verdict, error) { return s.ingest(fl, up, repo, ref) })
	return fl.wait(ctx)
}

// blobFacts gathers what gate.Decide needs to judge a blob asked for on
// its own, under the name of t.
func (s *Server) blobFacts(ctx, holdCtx context.Context, up *upstream.Registry, t target, links storage.Links) gate.Facts {
	f := gate.Facts{Subject: gate.Blob, Name: t.Registry + "/" + t.Repo, Digest: t.Digest, RetryAfter: s.opts.RetryAfter}
	if s.gatherOverride(ctx, &f) {
		return f
	}
	f.KnownBad = s.knownBad(t.Digest)
	if d := s.judge(f); len(f.KnownBad) > 0 && f.Override == nil && d.Refused() {
		return f // refused before anything is fetched
	}
	f.Blobs = s.blobVerdicts(ctx, holdCtx, up, t, links)
	return f
}

// blobVerdicts gathers a blob's verdicts in every context a manifest names
// it in (or as an artifact when none does). A blocked verdict under the
// current ruleset in any context, records of earlier releases included,
// is enough: the same bytes are not served by asking for them another way.
// A scan error in a role refuses nothing by itself (see gate.Decide), so
// only findings stop the gathering early.
func (s *Server) blobVerdicts(ctx, holdCtx context.Context, up *upstream.Registry, t target, links storage.Links) []gate.BlobFact {
	rid := s.scanner().RulesetID()
	unknown := blobRef{Digest: t.Digest, Size: -1}
	stored, err := s.opts.Verdicts.Verdicts(holdCtx, t.Digest)
	switch {
	case err != nil && holdCtx.Err() != nil:
		return []gate.BlobFact{s.blobFact(ctx, unknown, storage.Verdict{}, fmt.Errorf("look up verdicts for %s: %w", t.Digest, holdCtx.Err()))}
	case err != nil:
		return []gate.BlobFact{s.blobFact(ctx, unknown, storage.Verdict{}, fmt.Errorf("%w: verdict store: %v", errTransient, err))}
	}
	for _, v := range stored {
		if v.RulesetID == rid && v.Status != storage.StatusError && s.blobBlocked(v) {
			return []gate.BlobFact{{Ref: blobRef{Digest: t.Digest, Size: -1, Context: v.Context}, Verdict: v, State: gate.Judged}}
		}
	}
	contexts := links.Roles
	if len(contexts) == 0 {
		contexts = []storage.Context{storage.ContextArtifact}
	}
	var facts []gate.BlobFact
	for _, c := range contexts {
		ref := blobRef{Digest: t.Digest, Size: -1, Context: c}
		v, err := s.verdict(holdCtx, up, t.Repo, ref)
		b := s.blobFact(ctx, ref, v, err)
		facts = append(facts, b)
		if b.State != gate.Judged || (v.Status != storage.StatusError && s.blobBlocked(v)) {
			break
		}
	}
	return facts
}

// checkIndex refuses an index whose entries a client would fetch from
// anywhere but here: containerd fetches a descriptor from its urls first
// and may take embedded data as the content, so a child manifest (and all
// it names) would reach the client past the gate.
func checkIndex(body []byte) error {
	idx, err := gate.ParseIndex(body)
	if err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		if len(d.URLs) > 0 {
			return fmt.Errorf("index entry %s names urls to fetch it from, which would take it past pullgate", truncate(string(d.Digest), 80))
		}
		if len(d.Data) > 0 {
			return fmt.Errorf("index entry %s carries its content inline (data), which would take it past pullgate", truncate(string(d.Digest), 80))
		}
	}
	return nil
}
