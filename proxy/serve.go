package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// Serving a stored blob. The store holds only content that scanned clean,
// but a disk can flip bits and a file can be replaced behind pullgate's
// back, so a blob is hashed on the way out and the end of the response is
// held until the whole blob's digest matched. A blob that does not match
// is cut off before its end and removed from the store; its clean verdict
// then counts for nothing (usable needs the blob in the store), so the
// next request fetches and scans it again. A blob file that matched is
// remembered by its identity on the filesystem, and served by sendfile
// while that identity stays the same (storage/verified.go).

const (
	// serveChunk is the unit a blob is read and written in; one pooled
	// buffer of it is all a download holds while its client is slow.
	serveChunk = 64 << 10
	// serveHold is how much of the end of a response is held until the
	// digest matched: whatever the client received before is incomplete.
	serveHold = 64 << 10
)

// ServeOptions bound the blob downloads served to clients. Zero values
// take the defaults documented on each field.
type ServeOptions struct {
	// MaxStreams bounds the blob downloads served at once; each holds one
	// 64 KiB buffer. Default 512.
	MaxStreams int
	// StreamWait is how long a download over MaxStreams waits for a slot
	// before it is answered 429 TOOMANYREQUESTS with Retry-After
	// StreamRetryAfter. Defaults 2s and 5s.
	StreamWait       time.Duration
	StreamRetryAfter time.Duration
	// WriteTimeout cuts a download whose client takes no bytes for this
	// long. Default 60s.
	WriteTimeout time.Duration
}

var serveBufs = sync.Pool{New: func() any { b := make([]byte, serveChunk); return &b }}

// errClientWrite marks a failure to write to the client (gone, or too slow
// for the write timeout): nothing is wrong with the blob.
var errClientWrite = errors.New("write to client")

// streamSlots bounds the blob downloads in progress.
type streamSlots chan struct{}

// acquire takes a slot, waiting up to wait for one to free up.
func (s streamSlots) acquire(ctx context.Context, wait time.Duration) bool {
	select {
	case s <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (s streamSlots) release() { <-s }

// serveBlob answers HEAD|GET for a blob the gate let through, from the
// store, verifying it as it goes (see above).
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, dgst digest.Digest) {
	ctx := r.Context()
	if r.Method == http.MethodHead {
		s.headBlob(w, r, dgst)
		return
	}

	if !s.streams.acquire(ctx, s.opts.Serve.StreamWait) {
		msg := fmt.Sprintf("pullgate: too many blob downloads in progress (%d); retry in %s", cap(s.streams), s.opts.Serve.StreamRetryAfter)
		writeError(w, r, &apiError{Code: errcode.ErrorCodeTooManyRequests, Message: msg, RetryAfter: s.opts.Serve.StreamRetryAfter})
		return
	}
	defer s.streams.release()

	rc, size, err := s.opts.Blobs.Reader(ctx, dgst)
	if err != nil {
		writeError(w, r, s.blobStoreError(dgst, err))
		return
	}
	defer rc.Close()
	s.gate.Touch(dgst)
	setBlobHeaders(w, dgst)
	w.Header().Set("Accept-Ranges", "bytes")
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, dgst) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rg, ok := requestedRange(r, dgst, size)
	if !ok {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		writeError(w, r, &apiError{Code: errcode.ErrorCodeRangeInvalid, Message: fmt.Sprintf("pullgate: range %q is outside blob %s of %d bytes", truncate(r.Header.Get("Range"), 80), dgst, size)})
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(rg.length, 10))
	status := http.StatusOK
	if rg.partial {
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.start+rg.length-1, size))
	}

	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: s.opts.Serve.WriteTimeout, status: status}
	err = s.sendBody(ctx, dw, rc, dgst, size, rg)
	s.metrics.ServedBytes(int(dw.n))
	if err == nil {
		err = dw.finish()
	}
	var answer error
	switch {
	case err == nil:
		dw.clearDeadline()
		return
	case errors.Is(err, errClientWrite):
		s.log.Debug("blob download ended by the client", "digest", dgst.String(), "client", clientOf(r), "sent", dw.n, "err", err)
		panic(http.ErrAbortHandler) // the response is incomplete: close the connection
	case errors.Is(err, storage.ErrDigestMismatch):
		s.log.Error("stored blob failed verification; removed from the store, it will be fetched and scanned again",
			"digest", dgst.String(), "client", clientOf(r), "err", err)
		s.quarantine(ctx, dgst)
		answer = errUnavailable(fmt.Sprintf("pullgate: blob %s failed verification in the store and was removed; retry to fetch it again", dgst))
	default:
		s.log.Error("read stored blob", "digest", dgst.String(), "client", clientOf(r), "err", err)
		answer = errStoreUnavailable(fmt.Sprintf("blob %s", dgst))
	}
	if !dw.started {
		// Nothing was sent: the client can still get a clear answer.
		for _, h := range []string{"Docker-Content-Digest", "Etag", "Cache-Control", "Accept-Ranges", "Content-Range"} {
			w.Header().Del(h)
		}
		writeError(w, r, answer)
		return
	}
	// Part of the body went out: cut the connection, so the client sees a
	// truncated response and never the complete bytes.
	panic(http.ErrAbortHandler)
}

// headBlob answers HEAD for a blob the gate let through: its headers,
// without reading it.
func (s *Server) headBlob(w http.ResponseWriter, r *http.Request, dgst digest.Digest) {
	size, err := s.opts.Blobs.Stat(r.Context(), dgst)
	if err != nil {
		writeError(w, r, s.blobStoreError(dgst, err))
		return
	}
	setBlobHeaders(w, dgst)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
}

func setBlobHeaders(w http.ResponseWriter, dgst digest.Digest) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", dgst.String())
	w.Header().Set("Etag", `"`+dgst.String()+`"`)
	w.Header().Set("Cache-Control", "max-age=31536000")
}

// quarantine removes a blob whose stored bytes do not match its digest. Its
// verdict stays: a clean verdict is acted on only while the blob is in the
// store, so the next request fetches the blob again and scans it.
func (s *Server) quarantine(ctx context.Context, dgst digest.Digest) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.opts.Blobs.Delete(ctx, dgst); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Error("remove corrupt blob from the store", "digest", dgst.String(), "err", err)
	}
}

// blobStoreError answers a store failure for a blob. Driver errors name
// files on this server, so the client gets what failed and the log gets
// the error.
func (s *Server) blobStoreError(dgst digest.Digest, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return &apiError{Code: errcode.ErrorCodeBlobUnknown, Message: fmt.Sprintf("pullgate: blob %s is not in the store", dgst)}
	}
	s.log.Error("open stored blob", "digest", dgst.String(), "err", err)
	return errStoreUnavailable(fmt.Sprintf("blob %s", dgst))
}

// sendBody writes the range rg of the blob dgst of size bytes from rc: by
// sendfile when rc is the blob's file as it was when last verified
// (storage.Blobs.Verified), else hashed on the way with the tail held
// (verifiedCopy), and then remembered as verified when it matched.
func (s *Server) sendBody(ctx context.Context, dw *deadlineWriter, rc io.Reader, dgst digest.Digest, size int64, rg byteRange) error {
	f, isFile := rc.(*os.File)
	if isFile && s.opts.Blobs.Verified(dgst, f) {
		return sendFile(dw, f, dgst, rg)
	}
	began := time.Now()
	if err := verifiedCopy(ctx, dw, rc, dgst, size, rg.start, rg.length); err != nil {
		return err
	}
	if isFile {
		s.opts.Blobs.SetVerified(dgst, f, began)
	}
	return nil
}

// sendChunk is what one sendfile call may send under one write deadline:
// a client must take this much within serve.blob_write_timeout (4 KiB/s
// under the default 60 s) to be served.
const sendChunk = 256 << 10

// sendFile writes the range rg of the verified blob file f straight from
// the file to the connection: net/http hands an *os.File behind an
// io.LimitedReader to the kernel's sendfile.
func sendFile(dw *deadlineWriter, f *os.File, dgst digest.Digest, rg byteRange) error {
	if _, err := f.Seek(rg.start, io.SeekStart); err != nil {
		return fmt.Errorf("seek stored blob %s to byte %d: %w", dgst, rg.start, err)
	}
	for left := rg.length; left > 0; {
		n, err := dw.ReadFrom(io.LimitReader(f, min(sendChunk, left)))
		left -= n
		switch {
		case err != nil:
			return fmt.Errorf("%w: %w", errClientWrite, err)
		case n == 0:
			return fmt.Errorf("read stored blob %s: %w, %d bytes before the end of the range", dgst, io.ErrUnexpectedEOF, left)
		}
	}
	return nil
}

// verifiedCopy reads a blob of size bytes from src, hashes all of it, and
// writes the bytes in [off, off+n) to dst, holding back the last serveHold
// of them (all of them when fewer) until the whole blob hashed to dgst. On
// a mismatch the held part is never written and the error wraps
// storage.ErrDigestMismatch; a failed write, or ctx ending, wraps
// errClientWrite.
//
// A range is verified like the whole blob: the blob is read from its start
// and to its end, whatever part of it is sent.
func verifiedCopy(ctx context.Context, dst io.Writer, src io.Reader, dgst digest.Digest, size, off, n int64) error {
	bp := serveBufs.Get().(*[]byte)
	defer serveBufs.Put(bp)
	buf := *bp
	end := off + n
	hold := end - min(serveHold, n) // [hold, end) is held back
	var tail []byte
	if end == size {
		// Nothing is read after the held part: it can reuse the buffer.
		tail = buf[:end-hold]
	} else {
		tp := serveBufs.Get().(*[]byte)
		defer serveBufs.Put(tp)
		tail = (*tp)[:end-hold]
	}
	h := dgst.Algorithm().Hash()
	for pos := int64(0); pos < size; {
		if err := ctx.Err(); err != nil {
			// The client left; a range far into a large blob would
			// otherwise be read to its start for nobody.
			return fmt.Errorf("%w: %w", errClientWrite, context.Cause(ctx))
		}
		var p []byte
		switch {
		case pos < off:
			p = buf[:min(serveChunk, off-pos)]
		case pos < hold:
			p = buf[:min(serveChunk, hold-pos)]
		case pos < end:
			p = tail[pos-hold:]
		default:
			p = buf[:min(serveChunk, size-pos)]
		}
		m, err := io.ReadFull(src, p)
		h.Write(p[:m])
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// The file is shorter than the blob it holds.
			return fmt.Errorf("stored blob %s: %w: its file ends at byte %d of %d", dgst, storage.ErrDigestMismatch, pos+int64(m), size)
		case err != nil:
			return fmt.Errorf("read stored blob %s at byte %d of %d: %w", dgst, pos+int64(m), size, err)
		}
		if pos >= off && pos < hold {
			if _, err := dst.Write(p); err != nil {
				return fmt.Errorf("%w: %w", errClientWrite, err)
			}
		}
		pos += int64(m)
	}
	if got := digest.NewDigest(dgst.Algorithm(), h); got != dgst {
		return fmt.Errorf("stored blob %s: %w: its %d bytes hash to %s", dgst, storage.ErrDigestMismatch, size, got)
	}
	if len(tail) > 0 {
		if _, err := dst.Write(tail); err != nil {
			return fmt.Errorf("%w: %w", errClientWrite, err)
		}
	}
	return nil
}

// deadlineWriter writes a response body with a write deadline renewed
// before each write: a client that takes no bytes for timeout is cut off,
// one that is slow but reading is not.
type deadlineWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	status  int
	started bool // the status line has gone out
	n       int64
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if err := d.rc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, fmt.Errorf("set write deadline: %w", err)
	}
	if !d.started {
		d.started = true
		d.w.WriteHeader(d.status)
	}
	n, err := d.w.Write(p)
	d.n += int64(n)
	return n, err
}

// ReadFrom writes what r yields under one deadline, through the response
// writer's own ReadFrom: for a file, that is sendfile.
func (d *deadlineWriter) ReadFrom(r io.Reader) (int64, error) {
	if err := d.rc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, fmt.Errorf("set write deadline: %w", err)
	}
	if !d.started {
		d.started = true
		d.w.WriteHeader(d.status)
	}
	n, err := io.Copy(d.w, r)
	d.n += n
	return n, err
}

// finish sends the headers if nothing was written (an empty blob or range)
// and flushes what net/http still buffers, under the deadline.
func (d *deadlineWriter) finish() error {
	if !d.started {
		d.started = true
		d.w.WriteHeader(d.status)
	}
	if err := d.rc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("%w: %w", errClientWrite, err)
	}
	if err := d.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("%w: %w", errClientWrite, err)
	}
	return nil
}

// clearDeadline leaves the connection without a deadline for its next
// request, as it found it.
func (d *deadlineWriter) clearDeadline() { _ = d.rc.SetWriteDeadline(time.Time{}) }
