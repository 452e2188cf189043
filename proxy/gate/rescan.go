package gate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// RescanReport says what a rescan of the store found.
type RescanReport struct {
	Checked int             `json:"checked"` // blobs in the store
	Scanned int             `json:"scanned"` // of them, rescanned under the current ruleset
	Refused []digest.Digest `json:"refused"` // now found bad, removed from the store
	Failed  int             `json:"failed"`  // could not be rescanned now (tried again on demand)
}

// Rescan gives every stored blob a verdict under the current ruleset, in
// the background and behind interactive scans: after new rules, cached
// content is checked again before anyone asks for it. Each stored blob is
// then judged as the blob path judges it (gate.Decide, across every role
// it is known in, with the operator's overrides and the images allowed
// that list it); one now refused is removed from the store, blocked from
// then on, and reported as a retroactive block (with the clients the audit
// log says pulled it).
func (g *Gate) Rescan(ctx context.Context) (RescanReport, error) {
	var (
		tally rescanTally
		wg    sync.WaitGroup
	)
	rid := g.Scanner().RulesetID()
	sem := make(chan struct{}, max(1, g.Scanner().Workers()))
	err := g.opts.Blobs.Walk(ctx, func(d digest.Digest) error {
		tally.mu.Lock()
		tally.rep.Checked++
		tally.mu.Unlock()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			g.rescanBlob(ctx, d, rid, &tally)
		})
		return nil
	})
	wg.Wait()
	g.reportRetroactive(ctx, tally.refused)
	return tally.rep, err
}

// rescanTally adds up what the rescans of one Rescan found.
type rescanTally struct {
	mu      sync.Mutex
	rep     RescanReport
	refused []retro
}

func (t *rescanTally) add(f func(*rescanTally)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
}

// rescanBlob scans one stored blob in every context it still needs a
// verdict in under rid, then judges it on all its verdicts under rid, and
// removes it when the decision refuses it.
func (g *Gate) rescanBlob(ctx context.Context, d digest.Digest, rid string, tally *rescanTally) {
	known, missing, err := g.rescanContexts(ctx, d, rid)
	if err != nil {
		tally.add(func(t *rescanTally) { t.rep.Failed++ })
		return
	}
	for _, c := range missing {
		ref := Ref{Digest: d, Size: -1, Context: c, Prio: scanner.Background}
		info := FlightInfo{Digest: d, Kind: ref.Noun() + " rescan", Context: c, Size: -1}
		fl := g.flights.start(info, ref.Prio, func(fl *flight) (storage.Verdict, error) { return g.ingest(fl, nil, "", ref) })
		if _, err := fl.wait(ctx); err != nil {
			tally.add(func(t *rescanTally) { t.rep.Failed++ })
			return
		}
		tally.add(func(t *rescanTally) { t.rep.Scanned++ })
	}
	dec, facts, ok := g.judgeStored(ctx, d, rid, known)
	if !ok {
		tally.add(func(t *rescanTally) { t.rep.Failed++ })
		return
	}
	if !dec.Refused() || dec.Outcome == verdict.Overridden {
		// An operator's deny is no news of new rules: the blob stays
		// stored, unserved, until the operator lifts it.
		return
	}
	if err := g.opts.Blobs.Delete(ctx, d); err != nil && !errors.Is(err, storage.ErrNotFound) {
		g.log.Warn("remove a stored blob now refused", "digest", d.String(), "err", err)
		tally.add(func(t *rescanTally) { t.rep.Failed++ })
		return
	}
	if g.refusedBefore(ctx, d, rid, known) {
		// Stored only because an operator allowed it, and the allow is
		// gone: the rules say nothing new, so no retroactive block.
		g.log.Warn("stored blob no longer allowed by an operator; removed", "digest", d.String(), "reason", dec.Message)
		return
	}
	g.log.Warn("stored blob now refused; removed", "digest", d.String(), "reason", dec.Message)
	ref := Ref{Digest: d, Size: -1, Context: known[0]}
	for _, b := range facts.Blobs {
		if len(b.Verdict.Findings) > 0 || b.Verdict.Status == storage.StatusError {
			ref = b.Ref
			break
		}
	}
	tally.add(func(t *rescanTally) {
		t.rep.Refused = append(t.rep.Refused, d)
		t.refused = append(t.refused, retro{ref, storage.Verdict{Digest: d, Findings: dec.Findings}})
	})
}

// refusedBefore reports whether the latest verdicts of d under an earlier
// ruleset, in the contexts it is known in, already refused it under the
// policy in force: then it was stored by an operator's allow, not as clean content,
// and its refusal now is no news of new rules.
func (g *Gate) refusedBefore(ctx context.Context, d digest.Digest, rid string, known []storage.Context) bool {
	vs, err := g.opts.Verdicts.Verdicts(ctx, d)
	if err != nil {
		return false
	}
	// The latest earlier verdict in each context: one from long ago that
	// refused says nothing of a blob stored clean since.
	latest := map[storage.Context]storage.Verdict{}
	for _, v := range vs {
		if v.RulesetID != rid && slices.Contains(known, v.Context) && v.Time.After(latest[v.Context].Time) {
			latest[v.Context] = v
		}
	}
	for _, v := range latest {
		if v.Status != storage.StatusError && g.refuses(v) {
			return true
		}
	}
	return false
}

// judgeStored decides on a stored blob as a bare request for it would be
// decided, on its verdicts under rid in every context it is known in. It
// reports false when the facts could not be read or the rules changed
// meanwhile (the next rescan judges it again).
func (g *Gate) judgeStored(ctx context.Context, d digest.Digest, rid string, known []storage.Context) (Decision, Facts, bool) {
	f := Facts{Subject: Blob, Name: "(stored blob)", Digest: d, RulesetID: rid}
	if g.gatherOverride(ctx, &f) {
		return g.judge(f), f, f.OverrideErr == nil
	}
	f.KnownBad = g.knownBad(d)
	vs, err := g.opts.Verdicts.Verdicts(ctx, d)
	if err != nil {
		return Decision{}, f, false
	}
	for _, c := range known {
		i := slices.IndexFunc(vs, func(v storage.Verdict) bool { return v.Context == c && v.RulesetID == rid })
		if i < 0 {
			return Decision{}, f, false
		}
		f.Blobs = append(f.Blobs, BlobFact{Ref: Ref{Digest: d, Size: -1, Context: c}, Verdict: vs[i], State: Judged})
	}
	if g.Scanner().RulesetID() != rid {
		return Decision{}, f, false
	}
	dec := g.judge(f)
	if dec.Kind == Denied && f.Override == nil {
		if f.ImageAllow = g.imageAllow(ctx, "", d); f.ImageAllow != nil {
			dec = g.judge(f)
		}
	}
	return dec, f, dec.Kind == Serve || dec.Kind == Denied
}

// rescanContexts lists the contexts a stored blob is known in (the roles
// manifests give it, the contexts it was scanned in before; when none is
// known, the one its first byte suggests), and those of them that still
// need a verdict under the ruleset rid.
func (g *Gate) rescanContexts(ctx context.Context, d digest.Digest, rid string) (known, missing []storage.Context, err error) {
	links, err := g.opts.Verdicts.Links(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	vs, err := g.opts.Verdicts.Verdicts(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	isKnown := map[storage.Context]bool{}
	for _, c := range links.Roles {
		isKnown[c] = true
	}
	have := map[storage.Context]bool{}
	for _, v := range vs {
		if !v.Context.Valid() {
			continue
		}
		isKnown[v.Context] = true
		if v.RulesetID == rid {
			have[v.Context] = true
		}
	}
	if len(isKnown) == 0 {
		c := storage.ContextLayer
		if g.looksLikeConfig(ctx, d) {
			c = storage.ContextConfig
		}
		isKnown[c] = true
	}
	for _, c := range []storage.Context{storage.ContextConfig, storage.ContextLayer, storage.ContextArtifact} {
		if isKnown[c] {
			known = append(known, c)
			if !have[c] {
				missing = append(missing, c)
			}
		}
	}
	return known, missing, nil
}

// retro is a stored blob found bad by a rescan.
type retro struct {
	ref Ref
	v   storage.Verdict
}

// reportRetroactive says, for each blob a rescan refused, which stored
// images carry it and which clients pulled those before: the people to
// tell. Each becomes a "retroactive-block" event (log, page, audit, webhook).
func (g *Gate) reportRetroactive(ctx context.Context, refused []retro) {
	if len(refused) == 0 {
		return
	}
	bad := map[digest.Digest]bool{}
	for _, r := range refused {
		bad[r.ref.Digest] = true
	}
	// Which stored image manifests name a refused blob.
	carriers := map[digest.Digest][]digest.Digest{}
	_ = g.opts.Blobs.WalkManifests(ctx, func(m digest.Digest) error {
		body, _, err := g.opts.Blobs.Manifest(ctx, m)
		if err != nil {
			return nil
		}
		refs, err := BlobsOf(body, g.opts.MaxManifestLayers)
		if err != nil {
			return nil // an index, or not an image manifest
		}
		for _, ref := range refs {
			if bad[ref.Digest] {
				carriers[ref.Digest] = append(carriers[ref.Digest], m)
			}
		}
		return nil
	})
	for _, r := range refused {
		images, clients := g.pulledBefore(ctx, carriers[r.ref.Digest])
		image := "(stored " + r.ref.Noun() + ")"
		if len(images) > 0 {
			image = images[0]
		}
		msg := fmt.Sprintf("pullgate: stored %s %s is refused under the new rules and was removed from the store", r.ref.Noun(), r.ref.Digest)
		if len(images) > 0 {
			msg += fmt.Sprintf("; it is in %s", strings.Join(images, ", "))
		}
		if len(clients) > 0 {
			msg += fmt.Sprintf("; pulled before by %s", strings.Join(clients, ", "))
		} else {
			msg += "; no pull of it is on record"
		}
		g.opts.Events.Emit(events.Event{Image: image, Digest: r.ref.Digest, Decision: verdict.RetroactiveBlock, Findings: r.v.Findings, Reason: msg})
	}
}

// pulledBefore lists the images (by manifest digest) and the clients that
// the audit log says were served them.
func (g *Gate) pulledBefore(ctx context.Context, manifests []digest.Digest) (images, clients []string) {
	seenImage, seenClient := map[string]bool{}, map[string]bool{}
	for _, m := range manifests {
		records, err := g.opts.Audit(ctx, storage.AuditQuery{Digest: m, Kind: storage.AuditPull, Limit: storage.MaxAuditLimit})
		if err != nil {
			g.log.Warn("audit log query for a retroactive block", "digest", m.String(), "err", err)
			continue
		}
		for _, rec := range records {
			if rec.Decision != verdict.Allowed && rec.Decision != verdict.Overridden {
				continue
			}
			img := rec.Image
			if i := strings.LastIndexAny(img, ":@"); i > 0 && !strings.Contains(img[i:], "/") {
				img = img[:i]
			}
			img += "@" + m.String()
			if !seenImage[img] {
				seenImage[img] = true
				images = append(images, img)
			}
			if rec.Client != "" && !seenClient[rec.Client] {
				seenClient[rec.Client] = true
				clients = append(clients, rec.Client)
			}
		}
	}
	sort.Strings(images)
	sort.Strings(clients)
	return images, clients
}

// looksLikeConfig tells an image config (JSON) from a layer (tar, gzip,
// zstd) by its first byte; configs are scanned as configs.
func (g *Gate) looksLikeConfig(ctx context.Context, d digest.Digest) bool {
	rc, _, err := g.opts.Blobs.Open(ctx, d)
	if err != nil {
		return false
	}
	defer rc.Close()
	b, err := bufio.NewReader(rc).Peek(1)
	return err == nil && b[0] == '{'
}
