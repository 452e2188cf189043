package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/pullgate/pullgate/proxy/gate"
)

// Streaming a layer while it is scanned (stream mode). The body goes out
// as the ingest spools it, up to the held tail (gate.StreamHold, at least
// the final byte); then the response waits for the ingest to end and for
// the gate's decision on the blob, and only a decision that lets it
// through releases the tail. Anything else cuts the connection before the
// tail: the client holds an incomplete blob whose digest cannot match, and
// its retry gets the gate's answer (403 with the reason for a block).
// Memory per client: one pooled 64 KiB buffer; the tail is read from the
// spool, never held in memory.

// streamBlob answers a GET of a layer attached to its ingest's spool.
func (s *Server) streamBlob(w http.ResponseWriter, r *http.Request, t target, st *gate.BlobStream) {
	defer st.Close()
	ctx := r.Context()
	rg, ok := requestedRange(r, t.Digest, st.Size)
	switch {
	case !ok:
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(st.Size, 10))
		writeError(w, r, &apiError{Code: errcode.ErrorCodeRangeInvalid, Message: fmt.Sprintf("pullgate: range %q is outside blob %s of %d bytes", truncate(r.Header.Get("Range"), 80), t.Digest, st.Size)})
		return
	case rg.start >= st.HoldFrom:
		// Nothing to send before the decision: answered as in hold mode.
		s.heldBlob(w, r, t)
		return
	}
	if !s.streams.acquire(ctx, s.opts.Serve.StreamWait) {
		msg := fmt.Sprintf("pullgate: too many blob downloads in progress (%d); retry in %s", cap(s.streams), s.opts.Serve.StreamRetryAfter)
		writeError(w, r, &apiError{Code: errcode.ErrorCodeTooManyRequests, Message: msg, RetryAfter: s.opts.Serve.StreamRetryAfter})
		return
	}
	defer s.streams.release()

	setBlobHeaders(w, t.Digest)
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.FormatInt(rg.length, 10))
	status := http.StatusOK
	if rg.partial {
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.start+rg.length-1, st.Size))
	}
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: s.opts.Serve.WriteTimeout, status: status}
	end := rg.start + rg.length
	err := copySpooled(ctx, dw, st, rg.start, min(end, st.HoldFrom))
	if err == nil {
		// What net/http still buffers goes out before the wait for the
		// decision, which may last as long as the rest of the scan.
		_ = dw.rc.Flush()
		ev := requestEvent(r, t.Registry+"/"+t.Repo, t.Digest)
		err = st.Judge(ctx, s.upstream(t), t.Target, s.holdFor(r), ev)
	}
	if err == nil {
		err = copySpooled(ctx, dw, st, max(rg.start, st.HoldFrom), end)
	}
	if err == nil {
		err = dw.finish()
	}
	s.metrics.ServedBytes(int(dw.n))
	switch {
	case err == nil:
		dw.clearDeadline()
	case !dw.started && ctx.Err() == nil:
		// Nothing went out: the client can still get the gate's answer.
		for _, h := range []string{"Docker-Content-Digest", "Etag", "Cache-Control", "Accept-Ranges", "Content-Range"} {
			w.Header().Del(h)
		}
		s.heldBlob(w, r, t)
	default:
		s.log.Info("streamed blob cut before its tail", "digest", t.Digest.String(), "client", clientOf(r),
			"sent", dw.n, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// copySpooled writes the blob's bytes in [from, to) to dst as the ingest
// spools them. The spool ending short of to is an error.
func copySpooled(ctx context.Context, dst io.Writer, st *gate.BlobStream, from, to int64) error {
	if from >= to {
		return nil
	}
	bp := serveBufs.Get().(*[]byte)
	defer serveBufs.Put(bp)
	buf := *bp
	for pos := from; pos < to; {
		n, err := st.ReadAt(ctx, buf[:min(int64(len(buf)), to-pos)], pos)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return fmt.Errorf("%w: %w", errClientWrite, werr)
			}
			pos += int64(n)
			continue
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("stream blob at byte %d: %w", pos, err)
	}
	return nil
}
