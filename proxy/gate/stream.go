package gate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// StreamHold is how much of the end of a streamed layer is held back
// until the gate has decided on it: at least 64 KiB, and always the final
// byte, so a client that verifies digests never has the whole blob before
// its clean verdict.
const StreamHold = 64 << 10

// BlobStream is one client's view of a layer being ingested: the bytes the
// ingest has spooled so far, up to HoldFrom, and the rest only once Judge
// let it through. Close it when done.
type BlobStream struct {
	Size     int64 // the blob's size, from the manifest
	HoldFrom int64 // [HoldFrom, Size) is held until Judge lets it through

	g        *Gate
	fl       *flight
	sp       *spool
	released bool
}

// StreamBlob attaches a GET of the blob t.Digest to its ingest's spool
// when the blob is a layer of an image whose manifest was served early
// (StreamManifest) under the name of t, of known size, with no usable
// verdict yet: the ingest is started if the image's judgment has not
// started it yet. nil means the blob is answered as in hold mode (judged
// first): it is no such layer, it has a verdict, its ingest runs without a
// spool (it was started by a request in hold mode, the blob is in the
// store, another replica holds its lease), or ctx ended.
func (g *Gate) StreamBlob(ctx context.Context, up *upstream.Registry, t Target) *BlobStream {
	if g.opts.SpoolDir == "" || up == nil {
		return nil
	}
	img, ref, ok := g.images.find(t.Name(), t.Digest)
	if !ok || !img.running() || ref.IsConfig() || ref.Size < 0 {
		return nil
	}
	if v, err := g.opts.Verdicts.Verdict(ctx, ref.Digest, g.Scanner().RulesetID(), ref.Context); err == nil && g.usable(ctx, v) {
		return nil
	}
	ref.Prio, ref.Spool = scanner.Interactive, true
	info := FlightInfo{Digest: ref.Digest, Registry: up.Name(), Repo: t.Repo, Kind: ref.Noun(), Context: ref.Context, Size: ref.Size}
	fl := g.flights.start(info, ref.Prio, func(fl *flight) (storage.Verdict, error) { return g.ingest(fl, up, t.Repo, ref) })
	sp := fl.attachSpool(ctx)
	if sp == nil {
		return nil
	}
	if sp.size != ref.Size {
		sp.release()
		return nil
	}
	return &BlobStream{Size: ref.Size, HoldFrom: max(ref.Size-StreamHold, 0), g: g, fl: fl, sp: sp}
}

// ReadAt reads into p the blob's bytes at off, waiting while the ingest
// has not spooled them yet; it stops at HoldFrom until Judge let the blob
// through. It returns 0, nil at that bound, io.EOF when the ingest ended
// short of off, and ctx's error when ctx ends.
//
// Until then a byte goes out only once StreamHold bytes after it have
// come from upstream too, whatever the manifest declared: the end of what
// upstream really sends (which may hash to the digest short of the
// declared size) is held as well as the end of the declared blob.
//
// Once the ingest has ended without a clean verdict nothing more is read:
// a slow client is not sent the rest of a refused layer's head, nor kept
// holding its spool.
func (s *BlobStream) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if s.released {
		return s.sp.readAt(ctx, p, off, s.Size, 0)
	}
	select {
	case <-s.fl.done:
		if s.fl.err != nil || s.fl.verdict.Status != storage.StatusClean {
			return 0, errIngestNotClean
		}
	default:
	}
	return s.sp.readAt(ctx, p, off, s.HoldFrom, StreamHold)
}

// errIngestNotClean cuts the readers of a layer whose ingest ended
// without a clean verdict.
var errIngestNotClean = errors.New("the layer's ingest ended without a clean verdict")

// Judge waits for the ingest to finish, then asks the gate for the blob's
// decision as for any blob (AskBlob: the stored verdict, the operator's
// overrides, the known-bad list, the denies; within hold, recorded as
// ev). Only when it lets the blob through is the held tail released;
// anything else (findings, a scan error, a digest mismatch, an upstream
// failure, the ingest's timeout, the client gone) returns why not.
func (s *BlobStream) Judge(ctx context.Context, up *upstream.Registry, t Target, hold time.Duration, ev events.Event) error {
	if _, err := s.fl.wait(ctx); err != nil {
		return fmt.Errorf("ingest of %s: %w", t.Digest, err)
	}
	if !s.sp.wholeWritten() {
		return errors.New("the spool of " + t.Digest.String() + " is incomplete")
	}
	if err := s.g.AskBlob(ctx, up, t, hold, ev); err != nil {
		return err
	}
	s.released = true
	return nil
}

// Close lets go of the spool.
func (s *BlobStream) Close() { s.sp.release() }
