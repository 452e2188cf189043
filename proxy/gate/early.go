package gate

import (
	"context"
	"errors"
	"fmt"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// judgeEarly decides on an image manifest in stream mode from what is
// known without fetching a layer: its config's verdict (fetched and
// scanned first when there is none), the operator's overrides, the known-bad
// list, the denies on its blobs, the remembered refusal of an earlier
// judgment, and the verdicts already stored under the current rules (a
// blob that refuses alone, or findings that add up across them). A
// decision final from them (a refusal, or every blob judged under the
// current rules) is returned with early true for the caller to record; an
// image not yet decided is served, and judged in the background
// (streamImage), which records it as ev. early is false when
// the manifest is better answered as in hold mode: a name refused through
// its links, an operator's override on it, a manifest that cannot be read
// as an image, a config that could not be judged, or a refusal remembered
// from an ended judgment that the stored facts no longer give.
func (g *Gate) judgeEarly(ctx context.Context, up *upstream.Registry, t Target, a ManifestAnswer, links storage.Links, ev events.Event) (d Decision, early bool) {
	if g.admitLinked(ctx, t.Name(), t.ImageAt(a.Digest), links) != nil {
		return Decision{}, false
	}
	key := imageKey{name: t.Name(), digest: a.Digest}
	f := Facts{Subject: Image, Name: t.Name(), Digest: a.Digest, RetryAfter: g.opts.RetryAfter}
	if g.gatherOverride(ctx, &f) {
		return Decision{}, false
	}
	refs, err := BlobsOf(a.Body, g.opts.MaxManifestLayers)
	if err != nil {
		return Decision{}, false
	}
	f.Config = refs[0].Digest
	g.refreshSay(ctx, &f, refs)
	f.RulesetID = g.Scanner().RulesetID()
	// The config is judged before the manifest goes out (it is small):
	// its bytes may already be on the client, served as some other
	// image's artifact, and a client that holds them does not ask for
	// them again, so holding them back later would hold nothing.
	cv, err := g.verdict(ctx, up, t.Repo, refs[0])
	if err != nil || cv.RulesetID != f.RulesetID {
		return Decision{}, false // judged as in hold mode, with its errors
	}
	f.Blobs = append(f.Blobs, BlobFact{Ref: refs[0], Verdict: cv, State: Judged})
	usable := 1
	for _, r := range refs[1:] {
		v, err := g.opts.Verdicts.Verdict(ctx, r.Digest, f.RulesetID, r.Context)
		switch {
		case err == nil:
			f.Blobs = append(f.Blobs, BlobFact{Ref: r, Verdict: v, State: Judged})
			if g.usable(ctx, v) {
				usable++
			}
		case !errors.Is(err, storage.ErrNotFound):
			// Fail closed: without the verdict store nothing is known.
			f.Blobs = append(f.Blobs, BlobFact{Ref: r, State: Failed, Err: fmt.Errorf("%w: verdict store: %v", errTransient, err)})
		}
	}
	if g.Scanner().RulesetID() != f.RulesetID {
		return Decision{}, false // the rules moved while it was read: as in hold mode
	}
	d = g.judge(f)
	if _, ok := g.images.refused(key); ok && !d.Refused() {
		// Refused when its judgment ended, not by what is stored now:
		// judged as in hold mode, where an operator's allow or new rules
		// are heard.
		return Decision{}, false
	}
	if d.Refused() || usable == len(refs) {
		// Every blob judged under the current rules (or a refusal known
		// already): these are the facts a held manifest is decided on,
		// so the decision is final, and is not gathered a second time.
		return d, true
	}
	g.streamImage(up, t, a.Digest, a.Body, refs, ev)
	return Decision{Outcome: verdict.Pending, Kind: Serve}, true
}
