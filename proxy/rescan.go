package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

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
// content is checked again before anyone asks for it. A blob now found bad
// is removed from the store, blocked from then on, and reported as a
// retroactive block (with the clients the audit log says pulled it).
func (s *Server) Rescan(ctx context.Context) (RescanReport, error) {
	var (
		rep     RescanReport
		mu      sync.Mutex
		scanned atomic.Int64
		wg      sync.WaitGroup
		refused []retro
	)
	rid := s.scanner().RulesetID()
	sem := make(chan struct{}, max(1, s.scanner().Workers()))
	err := s.opts.Blobs.Walk(ctx, func(d digest.Digest) error {
		rep.Checked++
		if v, err := s.opts.Verdicts.Verdict(ctx, d, rid); err == nil && v.RulesetID == rid {
			return nil
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ref := blobRef{Digest: d, Size: -1, Config: s.looksLikeConfig(ctx, d), Prio: scanner.Background}
			info := FlightInfo{Digest: d, Kind: ref.noun() + " rescan", Size: -1}
			fl := s.flights.start(info, ref.Prio, func(fl *flight) (storage.Verdict, error) { return s.ingest(fl, nil, "", ref) })
			v, err := fl.wait(ctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				rep.Failed++
			case s.blobBlocked(v):
				scanned.Add(1)
				rep.Refused = append(rep.Refused, d)
				refused = append(refused, retro{ref, v})
			default:
				scanned.Add(1)
			}
		})
		return nil
	})
	wg.Wait()
	rep.Scanned = int(scanned.Load())
	s.reportRetroactive(ctx, refused)
	return rep, err
}

// retro is a stored blob found bad by a rescan.
type retro struct {
	ref blobRef
	v   storage.Verdict
}

// reportRetroactive says, for each blob a rescan refused, which stored
// images carry it and which clients pulled those before: the people to
// tell. Each becomes a "retroactive-block" event (log, page, audit, webhook).
func (s *Server) reportRetroactive(ctx context.Context, refused []retro) {
	if len(refused) == 0 {
		return
	}
	bad := map[digest.Digest]bool{}
	for _, r := range refused {
		bad[r.ref.Digest] = true
	}
	// Which stored image manifests name a refused blob.
	carriers := map[digest.Digest][]digest.Digest{}
	_ = s.opts.Blobs.WalkManifests(ctx, func(m digest.Digest) error {
		body, _, err := s.opts.Blobs.Manifest(ctx, m)
		if err != nil {
			return nil
		}
		refs, err := s.blobsOf(body)
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
		images, clients := s.pulledBefore(ctx, carriers[r.ref.Digest])
		image := "(stored " + r.ref.noun() + ")"
		if len(images) > 0 {
			image = images[0]
		}
		msg := fmt.Sprintf("pullgate: stored %s %s is refused under the new rules and was removed from the store", r.ref.noun(), r.ref.Digest)
		if len(images) > 0 {
			msg += fmt.Sprintf("; it is in %s", strings.Join(images, ", "))
		}
		if len(clients) > 0 {
			msg += fmt.Sprintf("; pulled before by %s", strings.Join(clients, ", "))
		} else {
			msg += "; no pull of it is on record"
		}
		s.record(event{Image: image, Digest: r.ref.Digest, Decision: "retroactive-block", Findings: r.v.Findings, Reason: msg})
	}
}

// pulledBefore lists the images (by manifest digest) and the clients that
// the audit log says were served them.
func (s *Server) pulledBefore(ctx context.Context, manifests []digest.Digest) (images, clients []string) {
	seenImage, seenClient := map[string]bool{}, map[string]bool{}
	for _, m := range manifests {
		records, err := s.audit.query(ctx, storage.AuditQuery{Digest: m, Kind: storage.AuditPull, Limit: storage.MaxAuditLimit})
		if err != nil {
			s.log.Warn("audit log query for a retroactive block", "digest", m.String(), "err", err)
			continue
		}
		for _, rec := range records {
			if rec.Decision != "allowed" && rec.Decision != "override" {
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
func (s *Server) looksLikeConfig(ctx context.Context, d digest.Digest) bool {
	rc, _, err := s.opts.Blobs.Open(ctx, d)
	if err != nil {
		return false
	}
	defer rc.Close()
	b, err := bufio.NewReader(rc).Peek(1)
	return err == nil && b[0] == '{'
}

// errNoUpstream: a rescan found a blob gone from the store.
var errNoUpstream = errors.New("not in the store, and no upstream to fetch it from")
