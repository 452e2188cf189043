package scanner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

var bufioPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// blobKind says how a blob's clients will use it, which decides what is
// scanned.
type blobKind int

const (
	// kindLayer is an image layer: clients decompress it and unpack it
	// as a tar, so it must walk as one or it is refused.
	kindLayer blobKind = iota
	// kindArtifact is a blob no client unpacks as a layer: walked as a
	// tar when it is one, otherwise scanned as one raw file.
	kindArtifact
)

// ScanLayer reads an image layer blob (a tar, uncompressed or compressed
// with gzip, bzip2, xz or zstd, detected by magic bytes as Docker Engine
// and containerd detect it) and scans every tar entry a client may write
// out: each entry with a body whatever its type or name, whiteouts
// included, and each hard link under its own name. A blob that does not
// decompress or walk as a tar is refused with ErrCorrupt, never scanned
// raw; an empty blob is an empty layer. The walk runs in the caller's
// goroutine; files go to the worker pool. On success r has been read to
// EOF (trailing bytes too, so every checksum is verified), so the caller
// can tee the same stream into storage.
//
// On error the Result holds what was found before the error; it must
// never be taken as clean. Limits give errors wrapping ErrLimit, undecodable
// content ErrCorrupt. Cancellation is noticed between reads of r, so r
// should itself return once ctx is done (an HTTP body does).
func (s *Scanner) ScanLayer(ctx context.Context, r io.Reader, prio Prioritizer) (Result, error) {
	return s.scanBlob(ctx, r, prio, kindLayer)
}

// ScanArtifact reads a blob that no client unpacks as a layer (an OCI
// artifact of another media type, or a blob fetched without a known
// role). Compression is detected as for ScanLayer; a decompressed stream
// that archive/tar takes for a tar is walked as ScanLayer walks it (the
// bytes after its end-of-archive blocks scanned as one raw file "/"),
// anything else is scanned as one raw file with path "/". Errors and
// reading to EOF are as for ScanLayer.
func (s *Scanner) ScanArtifact(ctx context.Context, r io.Reader, prio Prioritizer) (Result, error) {
	return s.scanBlob(ctx, r, prio, kindArtifact)
}

func (s *Scanner) scanBlob(ctx context.Context, r io.Reader, prio Prioritizer, kind blobKind) (Result, error) {
	start := time.Now()
	st, cancel, err := s.newScan(ctx, contextLayer, prio)
	if err != nil {
		return Result{RulesetID: s.RulesetID()}, err
	}
	defer cancel()
	w := &walker{s: s, st: st, parent: ctx, kind: kind}
	err = w.releasingBig(func() error { return w.walk(r) })
	if err == nil {
		err = st.wait()
	}
	if err == nil {
		err = st.firstErr()
	}
	if err != nil {
		if w.batch != nil {
			w.batch.buf.put()
			w.batch = nil
		}
		err = w.explain(err)
	}
	res := Result{Findings: st.result(), Files: w.files, Bytes: w.bytes, Duration: time.Since(start), RulesetID: st.rs.id}
	return res, err
}

// walker streams one layer into jobs.
type walker struct {
	s      *Scanner
	st     *scanState
	parent context.Context
	kind   blobKind
	// joined is where, in the file whose streams behind its start are
	// being read, the frames a reading as zstd -dc or gzip -dc went
	// through start (see walkJoined).
	joined map[int64]bool

	links *linkStore

	src   *sourceReader
	count *countReader

	files      int64
	bytes      int64
	rescanned  int64 // bytes scanned again under a hard link's name
	unpacked   int64 // bytes restored from packed executables
	unarchived int64 // bytes unpacked from archives and decoded payloads in files
	unread     int   // archive findings: archives not read whole

	batch *job   // small files waiting to be submitted
	used  int    // bytes of batch.buf in use
	tail  []byte // overlap carried between windows of a large file

	member  [][]byte // per depth: a member read whole before it is scanned (scanMember)
	decoded [][]byte // per depth: the base64 payload being scanned (unarchive)
	// onMember, while a stream behind a prefix is looked into, is told
	// where its later gzip members start (see unarchiveAll).
	onMember func(off int64)

	bigHeld bool // holds one of the scanner's big-decoder turns (see takeBigDecoder)
}

// sourceReader wraps the caller's reader: it remembers a read error (so it
// is reported as an I/O error, not as corruption) and stops reading once
// the scan's context is done.
type sourceReader struct {
	r   io.Reader
	ctx context.Context
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// countReader enforces MaxLayerBytes on the decompressed stream.
type countReader struct {
	r     io.Reader
	n     int64
	limit int64
	err   error
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if room := c.limit - c.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		c.err = limitError("layer decompresses to more than MaxLayerBytes %d", c.limit)
		return n, c.err
	}
	return n, err
}

// walk decodes the stream and submits its files. It returns the first
// error as it happened; explain turns it into the error to report.
func (w *walker) walk(r io.Reader) error {
	w.src = &sourceReader{r: r, ctx: w.st.ctx}
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(w.src)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()

	comp, err := detectLayer(br)
	if err != nil {
		return err
	}
	body, release, err := decompress(comp, br, nil)
	if err != nil {
		return err
	}
	defer release()
	if comp != uncompressed {
		ra := newReadAhead(body)
		defer ra.close() // before release: the goroutine reads the decoder
		body = ra
	}
	w.count = &countReader{r: body, limit: w.s.limits.MaxLayerBytes}
	stream, err := w.walkBody()
	if err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	// Read to the end: bytes after the tar's end-of-archive blocks still
	// count against MaxLayerBytes, and only EOF verifies a checksum of
	// the compressed stream and lets the caller's tee see the whole blob.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, br)
	if err != nil {
		return err
	}
	if n > 0 && comp != uncompressed {
		// The decoder ended before the blob did: whatever follows is
		// not something it read, so not something this scan saw.
		return corruptError("decode layer", fmt.Errorf("%d bytes after the end of the %v stream", n, comp))
	}
	return nil
}

// detectLayer returns the compression of the blob br reads, by magic
// bytes.
func detectLayer(br *bufio.Reader) (compression, error) {
	magic, err := br.Peek(detectPeek)
	if err != nil && err != io.EOF {
		return uncompressed, err
	}
	comp := detectCompression(magic)
	if comp != uncompressed {
		// Clients disagree on how to read a blob: Docker Engine and podman
		// decompress by magic bytes, containerd only gzip and zstd, and not
		// at all when the media type says uncompressed tar. A blob that is a
		// compressed stream and also reads as a tar as it stands would be
		// judged by one reading and unpacked by the other, so it is refused.
		raw, err := br.Peek(2 * blockSize)
		if err != nil && err != io.EOF {
			return comp, err
		}
		if isTar(raw) {
			return comp, corruptError("decode layer", fmt.Errorf("the blob is a %v stream and also reads as a tar without decompressing it: clients would unpack different files", comp))
		}
	}
	return comp, nil
}

// walkBody walks the decompressed stream as its kind says and returns the
// reader of what is left of it.
func (w *walker) walkBody() (io.Reader, error) {
	var stream io.Reader = w.count
	if w.kind == kindArtifact {
		var head [2 * blockSize]byte
		n, err := io.ReadFull(w.count, head[:])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, err
		}
		stream = io.MultiReader(bytes.NewReader(head[:n]), w.count)
		if !isTar(head[:n]) {
			return stream, w.walkRaw(stream)
		}
	}
	// What follows the end-of-archive blocks is scanned too: no unpacker
	// reads it, but a puller that fetches files by offset from the blob
	// might.
	if err := w.walkTar(stream); err != nil {
		return nil, err
	}
	return stream, w.walkTrailer(stream)
}

// explain turns the error that stopped a walk into the error to report.
// Causes are checked in order of how much they explain: the caller's
// context, an I/O error from the caller's reader, a limit, our own
// timeout, and only then the content itself is called corrupt.
func (w *walker) explain(err error) error {
	if cerr := w.s.ctxErr(w.parent, w.st); cerr != nil {
		if errors.Is(cerr, ErrLimit) {
			return cerr
		}
		return fmt.Errorf("scan layer: %w", cerr)
	}
	if w.src != nil && w.src.err != nil {
		return fmt.Errorf("read layer: %w", w.src.err)
	}
	if w.count != nil && w.count.err != nil {
		return w.count.err
	}
	switch {
	case err == w.st.firstErr(): // a worker's error says what it was scanning
		return err
	case errors.Is(err, ErrLimit), errors.Is(err, ErrCorrupt), errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, errSpool):
		return fmt.Errorf("scan layer: %w", err)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return limitError("zstd stream needs more than %d bytes of window: %v", zstdMaxWindow, err)
	}
	return corruptError("decode layer", err)
}
