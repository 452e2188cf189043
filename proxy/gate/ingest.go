package gate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// ingest produces the verdict for one blob under the current ruleset: from
// the verdict store when it is there, else by scanning the local copy (a new
// ruleset), else by fetching it from upstream while scanning it. It runs once
// per digest at a time (see flights) and outlives the requests waiting on it.
//
// The store only ever gains a blob whose digest verified and whose verdict is
// clean: the upstream bytes go to a storage writer and to the scanner at the
// same time, and the writer is committed after both agree, else cancelled.
func (g *Gate) ingest(fl *flight, up *upstream.Registry, repo string, ref Ref) (storage.Verdict, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.IngestTimeout)
	defer cancel()
	sc := g.Scanner()
	rid := sc.RulesetID()

	// Another flight (or replica) may have finished since the caller's
	// look-up: claim reads the verdict again once this ingest holds the
	// lease, and returns it when it is there.
	// A reader waiting for this ingest's spool is told at once that there
	// will be none when another replica holds the lease: it waits for that
	// replica's verdict as in hold mode.
	release, v, found, err := g.claim(ctx, ref, rid, func() { fl.publishSpool(nil) })
	if err != nil {
		return storage.Verdict{}, err
	}
	if found {
		return v, nil
	}
	defer release()

	start := time.Now()
	if _, statErr := g.opts.Blobs.Stat(ctx, ref.Digest); statErr == nil {
		v, err = g.rescanLocal(ctx, fl, sc, ref, up != nil)
	} else if up == nil {
		return storage.Verdict{}, fmt.Errorf("%w: %s %s: %w", errTransient, ref.Noun(), ref.Digest, errNoUpstream)
	} else {
		v, err = g.fetchAndScan(ctx, fl, sc, up, repo, ref)
	}
	if err != nil {
		g.log.Warn("ingest failed", "digest", ref.Digest.String(), "repo", repo, "err", err)
		return storage.Verdict{}, err
	}
	v.Time = time.Now().UTC()
	v.Duration = time.Since(start)
	if err := g.opts.Verdicts.PutVerdict(ctx, v); err != nil {
		// The blob may already be committed; without a stored verdict it is
		// never served, and the next request scans it again from local storage.
		return storage.Verdict{}, fmt.Errorf("%w: record verdict for %s: %v", errTransient, ref.Digest, err)
	}
	g.metrics.Scanned(v)
	g.log.Info("scanned", "digest", ref.Digest.String(), "kind", ref.Noun(), "status", string(v.Status),
		"findings", len(v.Findings), "bytes", v.Bytes, "files", v.Files, "duration", v.Duration.String())
	return v, nil
}

// usable reports whether a stored verdict can be acted on: one that lets
// the blob pass (under the current policy) only while the blob is in the
// store to serve; otherwise it is fetched and scanned again.
func (g *Gate) usable(ctx context.Context, v storage.Verdict) bool {
	if g.refuses(v) {
		return true
	}
	_, err := g.opts.Blobs.Stat(ctx, v.Digest)
	return err == nil
}

// fetchAndScan streams the blob from upstream into the store and the scanner.
func (g *Gate) fetchAndScan(ctx context.Context, fl *flight, sc *scanner.Scanner, up *upstream.Registry, repo string, ref Ref) (storage.Verdict, error) {
	rid := sc.RulesetID()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	body, size, err := up.Blob(ctx, repo, ref.Digest)
	if err != nil {
		return storage.Verdict{}, fmt.Errorf("%w: fetch %s %s from %s: %w", errTransient, ref.Noun(), ref.Digest, up.Name(), err)
	}
	defer body.Close()
	g.metrics.UpstreamBlob(up.Name())

	want := ref.Size
	if want < 0 {
		want = size
	}
	if want >= 0 && size >= 0 && size != want {
		return storage.Verdict{}, fmt.Errorf("%w: %s %s from %s: upstream declares %d bytes, the manifest %d", errTransient, ref.Noun(), ref.Digest, up.Name(), size, want)
	}
	limit := g.opts.MaxBlobBytes
	if want >= 0 {
		limit = want
	}
	if ref.IsConfig() && limit > g.opts.MaxConfigBytes {
		return g.contentError(rid, ref, fmt.Errorf("%w: config of %d bytes is over the %d byte limit", scanner.ErrLimit, limit, g.opts.MaxConfigBytes)), nil
	}

	w, err := g.opts.Blobs.Create(ctx)
	if err != nil {
		return storage.Verdict{}, fmt.Errorf("%w: store %s: %v", errTransient, ref.Digest, err)
	}
	digester := digest.Canonical.Digester()
	sinks := []io.Writer{w, digester.Hash()}
	sp := g.openSpool(fl, ref, size, want)
	if sp != nil {
		defer sp.end()
		sinks = append(sinks, sp)
	}
	committed := false
	defer func() {
		if !committed {
			_ = w.Cancel(context.WithoutCancel(ctx))
		}
	}()

	src := io.TeeReader(io.LimitReader(progress{body, fl}, limit+1), io.MultiWriter(sinks...))

	n, res, copyErr, scanErr := g.scanWhileReading(ctx, sc, ref, fl, src, limit)

	switch {
	case copyErr != nil:
		return storage.Verdict{}, fmt.Errorf("%w: fetch %s %s from %s: %w", errTransient, ref.Noun(), ref.Digest, up.Name(), copyErr)
	case n > limit:
		return storage.Verdict{}, fmt.Errorf("%w: %s %s from %s: upstream sent more than %d bytes", errTransient, ref.Noun(), ref.Digest, up.Name(), limit)
	case want >= 0 && n != want:
		return storage.Verdict{}, fmt.Errorf("%w: %s %s from %s: truncated: got %d of %d bytes", errTransient, ref.Noun(), ref.Digest, up.Name(), n, want)
	case digester.Digest() != ref.Digest:
		return storage.Verdict{}, fmt.Errorf("%w: %s %s from %s: content does not match its digest (got %s)", errTransient, ref.Noun(), ref.Digest, up.Name(), digester.Digest())
	}
	// The bytes are the ones the digest names; what the scanner said about
	// them is now a fact worth keeping.
	if scanErr != nil {
		if ctx.Err() != nil || errors.Is(scanErr, scanner.ErrClosed) {
			return storage.Verdict{}, fmt.Errorf("%w: scan %s %s: %w", errTransient, ref.Noun(), ref.Digest, scanErr)
		}
		return g.contentError(rid, ref, scanErr), nil
	}
	v := g.verdictOf(rid, ref, res)
	if v.Status != storage.StatusClean {
		return v, nil
	}
	if err := w.Commit(ctx, ref.Digest, n); err != nil {
		return storage.Verdict{}, fmt.Errorf("%w: commit %s %s: %v", errTransient, ref.Noun(), ref.Digest, err)
	}
	committed = true
	if sp != nil {
		g.verifyStored(ref.Digest)
	}
	return v, nil
}

// scanWhileReading reads src to its end (at most limit+1 bytes) while the
// scanner reads it: a config whole, anything else as a stream.
func (g *Gate) scanWhileReading(ctx context.Context, sc *scanner.Scanner, ref Ref, fl *flight, src io.Reader, limit int64) (int64, scanner.Result, error, error) {
	if !ref.IsConfig() {
		// Due by what it may read: the size the manifest or upstream
		// declares, else the blob limit (a blob of unknown size, asked
		// for by digest, does not go ahead of every sized one).
		return teeScan(ctx, g.streamScan(sc, ref), scanner.WithSize(fl.prio, limit), src)
	}
	buf, copyErr := io.ReadAll(src)
	n := int64(len(buf))
	if copyErr != nil || n > limit {
		return n, scanner.Result{}, copyErr, nil
	}
	res, scanErr := sc.ScanConfig(ctx, buf, fl.prio)
	return n, res, nil, scanErr
}

// streamScan is the scanner for a blob read as a stream: a tar layer is
// walked file by file, anything else is scanned as an artifact.
func (g *Gate) streamScan(sc *scanner.Scanner, ref Ref) func(context.Context, io.Reader, scanner.Prioritizer) (scanner.Result, error) {
	if ref.Context == storage.ContextLayer {
		return sc.ScanLayer
	}
	return sc.ScanArtifact
}

// teeScan feeds src to a stream scanner while returning how many bytes were
// read. The scanner may stop early (a limit, a corrupt stream); reading then
// goes on to the end so that the digest is still checked, and a scanner
// verdict is only kept for bytes that proved to be the right ones. Between
// the download and the scanner sits a bounded buffer (scanAhead), so each
// goes at its own pace.
func teeScan(ctx context.Context, scan func(context.Context, io.Reader, scanner.Prioritizer) (scanner.Result, error), prio scanner.Prioritizer, src io.Reader) (int64, scanner.Result, error, error) {
	p := newBufPipe(scanAhead)
	type scanned struct {
		res scanner.Result
		err error
	}
	out := make(chan scanned, 1)
	go func() {
		res, err := scan(ctx, p, prio)
		if err == nil {
			// A clean scan reads to EOF; if it returned first, the
			// rest of the stream was never looked at.
			if _, probe := p.Read(make([]byte, 1)); probe != io.EOF {
				err = errors.New("scanner stopped before the end of the blob")
			}
		}
		p.CloseRead(errScannerDone)
		out <- scanned{res, err}
	}()
	buf := copyBuffers.Get().(*[]byte)
	n, copyErr := io.CopyBuffer(&sink{w: p}, src, *buf)
	copyBuffers.Put(buf)
	p.CloseWrite(copyErr)
	r := <-out
	return n, r.res, copyErr, r.err
}

// scanAhead is how far a download may run ahead of its scanner.
const scanAhead = 8 << 20

// copyBuffers make fewer, larger reads and writes than io.Copy's 32 KiB.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

var errScannerDone = errors.New("scanner finished")

// sink writes to the scanner's pipe until the scanner stops reading, then
// swallows the rest so the copy can finish verifying the digest.
type sink struct {
	w    io.Writer
	done bool
}

func (s *sink) Write(p []byte) (int, error) {
	if !s.done {
		if _, err := s.w.Write(p); err != nil {
			s.done = true
		}
	}
	return len(p), nil
}

// rescanLocal scans a blob already in the store under a ruleset that has no
// verdict for it yet. Asked for by a request (drop), a blob whose findings
// now block leaves the store. A rescan keeps it until it has judged the
// blob across all its roles with the operator's overrides (Rescan), and
// no scan error removes it here: an error in one role refuses a blob only
// when no role reads it clean, which one role cannot tell.
func (g *Gate) rescanLocal(ctx context.Context, fl *flight, sc *scanner.Scanner, ref Ref, drop bool) (storage.Verdict, error) {
	rid := sc.RulesetID()
	stored, size, err := g.opts.Blobs.Open(ctx, ref.Digest)
	if err != nil {
		return storage.Verdict{}, fmt.Errorf("%w: open stored %s %s: %v", errTransient, ref.Noun(), ref.Digest, err)
	}
	defer stored.Close()
	rc := progress{stored, fl}
	var res scanner.Result
	if ref.IsConfig() {
		buf, err := io.ReadAll(io.LimitReader(rc, g.opts.MaxConfigBytes+1))
		if err != nil {
			return storage.Verdict{}, fmt.Errorf("%w: read stored config %s: %v", errTransient, ref.Digest, err)
		}
		res, err = sc.ScanConfig(ctx, buf, fl.prio)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, scanner.ErrClosed) {
				return storage.Verdict{}, fmt.Errorf("%w: rescan %s: %w", errTransient, ref.Digest, err)
			}
			return g.contentError(rid, ref, err), nil
		}
	} else {
		res, err = g.streamScan(sc, ref)(ctx, rc, scanner.WithSize(fl.prio, size))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, scanner.ErrClosed) {
				return storage.Verdict{}, fmt.Errorf("%w: rescan %s: %w", errTransient, ref.Digest, err)
			}
			return g.contentError(rid, ref, err), nil
		}
	}
	v := g.verdictOf(rid, ref, res)
	if drop && v.Status == storage.StatusBlocked {
		return g.dropLocal(ctx, v)
	}
	return v, nil
}

// dropLocal removes a stored blob whose new verdict is not clean.
func (g *Gate) dropLocal(ctx context.Context, v storage.Verdict) (storage.Verdict, error) {
	if err := g.opts.Blobs.Delete(ctx, v.Digest); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.Verdict{}, fmt.Errorf("%w: remove %s from the store: %v", errTransient, v.Digest, err)
	}
	g.log.Warn("stored blob now refused; removed", slog.String("digest", v.Digest.String()), slog.String("status", string(v.Status)))
	return v, nil
}

// verdictOf turns a scan result into the verdict to store.
// A verdict is recorded under the ruleset its scan ran under (the result
// names it; rid, read before the scan began, when it does not), never
// under rules a reload put in place meanwhile.
func (g *Gate) verdictOf(rid string, ref Ref, res scanner.Result) storage.Verdict {
	v := storage.Verdict{
		Digest:         ref.Digest,
		RulesetID:      cmp.Or(res.RulesetID, rid),
		Context:        ref.Context,
		Status:         storage.StatusClean,
		Bytes:          res.Bytes,
		Files:          res.Files,
		ScannerVersion: scanner.Version,
	}
	for _, f := range res.Findings {
		f.Layer = ref.Digest
		v.Findings = append(v.Findings, f)
	}
	if g.refuses(v) {
		v.Status = storage.StatusBlocked
	}
	return v
}

// contentError is the verdict for content the scanner could not finish
// (a limit, a corrupt stream): refused, with the reason.
func (g *Gate) contentError(rid string, ref Ref, err error) storage.Verdict {
	return storage.Verdict{
		Digest:         ref.Digest,
		RulesetID:      rid,
		Context:        ref.Context,
		Status:         storage.StatusError,
		Reason:         err.Error(),
		ScannerVersion: scanner.Version,
	}
}

// fetchOverridden stores a blob that an operator allowed although its
// verdict is not clean: fetched once, its digest verified, committed without
// the scanner's consent. The override, not the verdict, lets it be served,
// and only while the override stands.
func (g *Gate) fetchOverridden(ctx context.Context, up *upstream.Registry, repo string, ref Ref) error {
	if _, err := g.opts.Blobs.Stat(ctx, ref.Digest); err == nil {
		return nil
	}
	info := FlightInfo{Digest: ref.Digest, Registry: up.Name(), Repo: repo, Kind: "override", Size: ref.Size}
	fl := g.allowFlights.start(info, scanner.Interactive, func(fl *flight) (storage.Verdict, error) {
		return storage.Verdict{}, g.fetchVerified(fl, up, repo, ref)
	})
	_, err := fl.wait(ctx)
	return err
}

func (g *Gate) fetchVerified(fl *flight, up *upstream.Registry, repo string, ref Ref) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.IngestTimeout)
	defer cancel()
	body, size, err := up.Blob(ctx, repo, ref.Digest)
	if err != nil {
		return fmt.Errorf("fetch %s from %s: %w", ref.Digest, up.Name(), err)
	}
	defer body.Close()
	limit := g.opts.MaxBlobBytes
	if size >= 0 {
		limit = size
	}
	w, err := g.opts.Blobs.Create(ctx)
	if err != nil {
		return fmt.Errorf("store %s: %w", ref.Digest, err)
	}
	n, err := io.Copy(w, io.LimitReader(progress{body, fl}, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("upstream sent more than %d bytes", limit)
	}
	if err == nil {
		err = w.Commit(ctx, ref.Digest, n)
	}
	if err != nil {
		_ = w.Cancel(context.WithoutCancel(ctx))
		return fmt.Errorf("fetch %s from %s: %w", ref.Digest, up.Name(), err)
	}
	return nil
}
