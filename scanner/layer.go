package scanner

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pullgate/pullgate/scanner/upx"
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
	err = w.walk(r)
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

	links *linkStore

	src   *sourceReader
	count *countReader

	files      int64
	bytes      int64
	rescanned  int64 // bytes scanned again under a hard link's name
	unpacked   int64 // bytes restored from packed executables
	unarchived int64 // bytes unpacked from archives and decoded payloads in files

	batch *job   // small files waiting to be submitted
	used  int    // bytes of batch.buf in use
	tail  []byte // overlap carried between windows of a large file
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

	magic, err := br.Peek(detectPeek)
	if err != nil && err != io.EOF {
		return err
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
			return err
		}
		if isTar(raw) {
			return corruptError("decode layer", fmt.Errorf("the blob is a %v stream and also reads as a tar without decompressing it: clients would unpack different files", comp))
		}
	}
	body, release, err := decompress(comp, br)
	if err != nil {
		return err
	}
	defer release()
	w.count = &countReader{r: body, limit: w.s.limits.MaxLayerBytes}

	var stream io.Reader = w.count
	switch w.kind {
	case kindLayer:
		// What follows the end-of-archive blocks is scanned too: no
		// unpacker reads it, but a puller that fetches files by offset
		// from the blob might.
		err = w.walkTar(stream)
		if err == nil {
			err = w.walkTrailer(stream)
		}
	case kindArtifact:
		var head [2 * blockSize]byte
		n, rerr := io.ReadFull(w.count, head[:])
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return rerr
		}
		stream = io.MultiReader(bytes.NewReader(head[:n]), w.count)
		if isTar(head[:n]) {
			err = w.walkTar(stream)
			if err == nil {
				err = w.walkTrailer(stream)
			}
		} else {
			err = w.walkRaw(stream)
		}
	}
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

const blockSize = 512

// errNeedMore marks the end of the bytes isTar was given.
var errNeedMore = errors.New("need more bytes")

// isTar says whether archive/tar, as dockerd and containerd use it, reads
// a stream starting with head (its first two blocks, or all of a shorter
// stream) as a tar: it decides with its own header parsing (either
// checksum, any format). A first header whose entry needs more bytes than
// head holds counts as a tar.
func isTar(head []byte) bool {
	if len(head) < blockSize {
		return false
	}
	var more io.Reader = eofReader{}
	if len(head) == 2*blockSize {
		more = errReaderOf{errNeedMore}
	}
	_, err := tar.NewReader(io.MultiReader(bytes.NewReader(head), more)).Next()
	return err == nil || err == io.EOF || errors.Is(err, errNeedMore)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReaderOf struct{ err error }

func (e errReaderOf) Read([]byte) (int, error) { return 0, e.err }

// walkTar walks a tar as archive/tar reads it, so as dockerd and
// containerd read it. Every entry that carries a body is scanned,
// whatever its type or name: a client may write out any of them (moby
// turns a whiteout-named file under the AUFS hard-link directory into a
// file elsewhere through a hard link). Hard links are scanned again under
// their own name (scanLink).
func (w *walker) walkTar(r io.Reader) error {
	tr := tar.NewReader(r)
	w.links = newLinkStore(linkStoreBytes)
	defer w.links.release()
	for {
		hdr, err := w.nextEntry(tr, "")
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeLink:
			if err := w.scanLink(hdr); err != nil {
				return err
			}
			continue
		case tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			// archive/tar gives these no body whatever their size field
			// says; a symlink's target is scanned under its own name.
			continue
		case tar.TypeXGlobalHeader:
			// Its body is PAX records, read by archive/tar; no client
			// writes it out.
			continue
		}
		name := cleanPath(hdr.Name)
		base := path.Base(name)
		if err := w.countFile(name, hdr.Size); err != nil {
			return err
		}
		if w.count.n+hdr.Size > w.count.limit {
			return limitError("file %s (%d bytes) takes the layer past MaxLayerBytes %d", name, hdr.Size, w.count.limit)
		}
		var body io.Reader = tr
		ring, start, kept := w.links.keep(hdr.Size)
		if kept {
			body = io.TeeReader(tr, ring)
		}
		exec, err := w.scanFile(item{path: name, name: base, ext: extension(base), exec: hdr.Mode&0o111 != 0}, body, hdr.Size)
		if err != nil {
			return err
		}
		w.links.add(hdr.Name, name, &linkEntry{start: start, size: hdr.Size, kept: kept, exec: exec})
	}
}

// countFile counts one more file scanned and checks MaxFiles and
// MaxFileBytes.
func (w *walker) countFile(name string, size int64) error {
	w.files++
	if w.files > w.s.limits.MaxFiles {
		return limitError("layer has more than MaxFiles %d files", w.s.limits.MaxFiles)
	}
	if size > w.s.limits.MaxFileBytes {
		return limitError("file %s is %d bytes, more than MaxFileBytes %d", name, size, w.s.limits.MaxFileBytes)
	}
	return nil
}

// scanLink scans a hard link's target content again under the link's
// path, so a finding names the path the host will see and rules that
// look at names judge that name. The link shares its target's inode, and
// a client sets the inode's mode to the link's (moby's UnpackLayer
// does): the link is scanned as executable when either is, and when the
// link makes a non-executable inode executable, the inode's earlier names
// are scanned again as executable.
//
// The target must be a regular file (or a hard link to one) earlier in
// this layer, or one of moby's AUFS hard-link files; anything else is
// refused as corrupt: a tar writer emits a link only after its target,
// and a link into an earlier layer would carry content this scan cannot
// see under a name it chose. When the target's content is no longer in
// the link store (larger than the store, or pushed out by later files),
// the link is scanned by name only: an empty body with the exec bit,
// which is what rules on names and paths look at; the content itself was
// scanned under the target's own name.
func (w *walker) scanLink(hdr *tar.Header) error {
	name := cleanPath(hdr.Name)
	e, viaPlnk, ok := w.links.resolve(hdr.Linkname)
	if !ok {
		return corruptError("hard link "+name, fmt.Errorf("target %q is not a regular file earlier in this layer", hdr.Linkname))
	}
	linkExec := hdr.Mode&0o111 != 0
	if !e.exec && e.names == nil && !viaPlnk {
		// The target's own path, in case a later link makes it executable;
		// AUFS hard-link files are not written under their own path.
		if err := w.links.addName(e, cleanPath(hdr.Linkname)); err != nil {
			return err
		}
	}
	if linkExec && !e.exec {
		for _, n := range e.names {
			if _, err := w.scanAs(n, e, true); err != nil {
				return err
			}
		}
		e.names = nil
		e.exec = true
	}
	exec, err := w.scanAs(name, e, e.exec || linkExec)
	if err != nil {
		return err
	}
	e.exec = e.exec || exec
	if !e.exec {
		if err := w.links.addName(e, name); err != nil {
			return err
		}
	}
	w.links.add(hdr.Name, name, e)
	return nil
}

// scanAs scans a kept entry's content under name (by name only when the
// content is no longer kept). The bytes count against MaxLayerBytes.
func (w *walker) scanAs(name string, e *linkEntry, exec bool) (bool, error) {
	base := path.Base(name)
	if err := w.countFile(name, e.size); err != nil {
		return false, err
	}
	body, kept := w.links.content(e)
	size := e.size
	if !kept {
		body, size = bytes.NewReader(nil), 0
	}
	w.rescanned += size
	if w.count.n+w.rescanned > w.count.limit {
		return false, limitError("hard link %s takes the bytes scanned past MaxLayerBytes %d", name, w.count.limit)
	}
	return w.scanFile(item{path: name, name: base, ext: extension(base), exec: exec}, body, size)
}

// nextEntry reads the next header of a tar being walked, once the scan is
// still wanted: a cancelled scan or a worker's error is returned as it is
// (explain tells them apart by identity), a header that does not parse is
// wrapped with where it was read (in: "" for the layer itself).
func (w *walker) nextEntry(tr *tar.Reader, in string) (*tar.Header, error) {
	if err := w.st.ctx.Err(); err != nil {
		return nil, err
	}
	if err := w.st.firstErr(); err != nil {
		return nil, err
	}
	hdr, err := tr.Next()
	switch {
	case err == nil, err == io.EOF:
		return hdr, err
	case in == "":
		return nil, fmt.Errorf("read tar header: %w", err)
	}
	return nil, fmt.Errorf("read tar header in %s: %w", in, err)
}

// walkTrailer scans what follows a tar's end-of-archive blocks as one raw
// file "/": no tar reader looks at it, but an artifact's reader, or a
// puller that reads files by offset, may.
func (w *walker) walkTrailer(r io.Reader) error {
	// Zeros (the tar's record padding, or a bomb of them) are nothing to
	// scan: the raw file starts at the first byte that is not zero.
	br := bufio.NewReaderSize(r, 32<<10)
	for {
		p, err := br.Peek(32 << 10)
		if i := slices.IndexFunc(p, func(b byte) bool { return b != 0 }); i >= 0 {
			if _, err := br.Discard(i); err != nil {
				return err
			}
			return w.walkRaw(br)
		}
		if _, derr := br.Discard(len(p)); derr != nil {
			return derr
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil && err != bufio.ErrBufferFull:
			return err
		}
	}
}

// walkRaw scans a blob that is not a tar as one file named "/".
func (w *walker) walkRaw(r io.Reader) error {
	w.files++
	_, err := w.scanFile(item{path: "/", name: "", ext: ""}, r, -1)
	return err
}

func cleanPath(name string) string { return path.Clean("/" + name) }

func extension(base string) string {
	ext := path.Ext(base)
	if ext == "" {
		return ""
	}
	return strings.ToLower(ext[1:])
}

// hasExecMagic reports ELF, Mach-O (thin and fat) and PE/MZ headers.
func hasExecMagic(b []byte) bool {
	if len(b) >= 4 {
		switch binary.BigEndian.Uint32(b) {
		case 0x7f454c46, // ELF
			0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, // Mach-O
			0xcafebabe: // Mach-O fat
			return true
		}
	}
	return len(b) >= 2 && b[0] == 'M' && b[1] == 'Z'
}

// scanFile reads one file of known size (or, for size < 0, up to EOF) and
// submits it: packed into the current batch when it fits, otherwise in
// overlapping windows.
// It returns whether the file was taken as executable (mode or magic).
func (w *walker) scanFile(it item, r io.Reader, size int64) (bool, error) {
	if size >= 0 && size <= int64(w.s.batchSize) {
		return w.addSmall(it, r, int(size), w.s.batchSize)
	}
	return w.scanWindows(it, r, size)
}

// maxBatchItems caps the files packed into one job, so a layer of
// millions of empty or tiny files is still spread over the workers and
// its item lists stay small.
const maxBatchItems = 1024

func (w *walker) addSmall(it item, r io.Reader, size, batchCap int) (bool, error) {
	if w.batch != nil && (w.used+size > batchCap || len(w.batch.items) >= maxBatchItems) {
		if err := w.flush(); err != nil {
			return false, err
		}
	}
	if w.batch == nil {
		if err := w.st.acquire(); err != nil {
			return false, err
		}
		w.batch = &job{scan: w.st, buf: w.s.batches.get()}
		w.used = 0
	}
	data := w.batch.buf.b[w.used : w.used+size]
	if _, err := io.ReadFull(r, data); err != nil {
		return false, fmt.Errorf("read %s: %w", it.shown(), noEOF(err))
	}
	w.used += size
	w.bytes += int64(size)
	it.exec = it.exec || hasExecMagic(data)
	it.hash = w.st.rs.knownBad != nil
	it.data = data
	w.batch.items = append(w.batch.items, it)
	if isELF(data) {
		// Unpacked before data's batch can be submitted and recycled.
		u, err := w.unpack(data)
		if err := w.scanUnpacked(it, u, err); err != nil {
			return false, err
		}
	}
	if kind := detectArchive(&it, data, int64(size)); kind != notArchive {
		// Taken now: data goes to a worker with its batch, which may be
		// submitted and recycled while the archive is unpacked.
		if err := w.unarchive(it, contents(kind, data)); err != nil {
			return false, err
		}
	}
	return it.exec, nil
}

// flush submits the current batch, if any.
func (w *walker) flush() error {
	j := w.batch
	w.batch = nil
	if j == nil {
		return nil
	}
	return w.s.submit(j)
}

// scanWindows submits a large file as windows of Window bytes, each
// starting windowOverlap bytes before the previous one ended.
//
// An ELF file is offered to upx.Unpack: from its one window when it fits
// in one; otherwise the first window decides (a file without UPX's layout
// is answered from its first KiB, and a packed program whose blocks all
// lie in the first window unpacks from it), and a file that has the
// layout but needs more is kept whole in memory as it streams (it is at
// most MaxFileBytes) and unpacked at its end.
func (w *walker) scanWindows(it item, r io.Reader, size int64) (bool, error) {
	window := int(w.s.limits.Window)
	maxBytes := w.s.limits.MaxFileBytes
	var read int64
	w.tail = w.tail[:0]
	var sum hash.Hash
	if w.st.rs.knownBad != nil {
		sum = sha256.New()
	}
	var (
		u     *upx.Unpacked
		uerr  error
		whole []byte // the file so far, when it must be unpacked whole
		hold  bool

		kind    archiveKind
		archive *archived // what the file holds, when it fits in one window
	)
	for first := true; ; first = false {
		if err := w.st.acquire(); err != nil {
			return false, err
		}
		buf := w.s.windows.get()
		n := copy(buf.b, w.tail)
		want := window - n
		if size >= 0 {
			want = int(min(int64(want), size-read))
		}
		m, err := io.ReadFull(r, buf.b[n:n+want])
		read += int64(m)
		last := size >= 0 && read == size
		if err != nil {
			if size >= 0 || (err != io.EOF && err != io.ErrUnexpectedEOF) {
				buf.put()
				w.st.release()
				return false, fmt.Errorf("read %s: %w", it.shown(), noEOF(err))
			}
			last = true
		}
		if size < 0 && read > maxBytes {
			buf.put()
			w.st.release()
			return false, limitError("file %s is more than MaxFileBytes %d", it.shown(), maxBytes)
		}
		if last && m == 0 && !first {
			// An unsized stream ended exactly at a window boundary.
			buf.put()
			w.st.release()
			break
		}
		data := buf.b[:n+m]
		if sum != nil {
			// Hashed before the window goes to a worker, which gives the
			// buffer back to the pool when done.
			sum.Write(data[n:])
		}
		if first {
			it.exec = it.exec || hasExecMagic(data)
			if isELF(data) {
				// Decided before the window goes to a worker.
				u, uerr = w.unpack(data)
				// Too large now is too large at the end: the limit only
				// shrinks as the file is read.
				if !last && uerr != nil && !errors.Is(uerr, upx.ErrNotPacked) && !errors.Is(uerr, upx.ErrTooLarge) {
					u, uerr, hold = nil, nil, true
					if size >= 0 {
						whole = make([]byte, 0, size)
					}
				}
			}
			// Only archives whole in one window are unpacked: a zip is
			// read from its end, and holding larger files whole would
			// let one layer pin MaxFileBytes of memory.
			if kind = detectArchive(&it, data, size); kind != notArchive && last {
				archive = contents(kind, data)
			}
		}
		if hold {
			whole = append(whole, data[n:]...)
		}
		if !last {
			w.tail = append(w.tail[:0], data[len(data)-windowOverlap:]...)
		}
		wi := it
		wi.data = data
		if err := w.s.submit(&job{scan: w.st, buf: buf, items: []item{wi}}); err != nil {
			return false, err
		}
		if last {
			break
		}
	}
	w.bytes += read
	if sum != nil {
		var s [sha256.Size]byte
		if f, ok := w.st.rs.knownBad.finding([sha256.Size]byte(sum.Sum(s[:0])), it.shown()); ok {
			f.File = it.file()
			w.st.add(f)
		}
	}
	if hold {
		u, uerr = w.unpack(whole)
		whole = nil
	}
	if err := w.scanUnpacked(it, u, uerr); err != nil {
		return false, err
	}
	switch {
	case archive != nil:
		if err := w.unarchive(it, archive); err != nil {
			return false, err
		}
	case kind != notArchive && kind != archiveScript:
		w.archiveFinding(it, ArchiveTooLargeRule, SeverityLow,
			fmt.Sprintf("archive larger than the scan window of %d bytes: its bytes were scanned as they are, but it was not unpacked", w.s.limits.Window))
	}
	return it.exec, nil
}

// noEOF reports a short file as unexpected EOF: inside a tar, EOF before
// a file's end means the stream was truncated.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
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
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return limitError("zstd stream needs more than %d bytes of window: %v", zstdMaxWindow, err)
	}
	return corruptError("decode layer", err)
}
