package proxy

import (
	"bufio"
	"context"
	"errors"
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
			fl := s.flights.start(info, func(fl *flight) (storage.Verdict, error) { return s.ingest(fl, nil, "", ref) })
			v, err := fl.wait(ctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				rep.Failed++
			case s.blobBlocked(v):
				scanned.Add(1)
				rep.Refused = append(rep.Refused, d)
				s.record(event{Image: "(stored blob)", Digest: d, Decision: "retroactive-block", Findings: v.Findings,
					Reason: "pullgate: stored " + ref.noun() + " " + d.String() + " is refused under the new rules and was removed from the store"})
			default:
				scanned.Add(1)
			}
		})
		return nil
	})
	wg.Wait()
	rep.Scanned = int(scanned.Load())
	return rep, err
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
