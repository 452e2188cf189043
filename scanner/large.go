package scanner

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Archives larger than one window are unpacked too, without holding them
// in memory: a tar or a compressed stream is unpacked as it is read (its
// first window is scanned as bytes, the rest goes to the unpacker, and
// what the unpacker leaves is scanned as bytes again); a zip, which is
// read from its directory at its end, is spooled to a temporary file as
// its windows are scanned, and unpacked from it at its end.

// restReader reads the rest of a file whose first window was read by
// nextWindow: its bytes count as the file's (Result.Bytes, MaxFileBytes
// for a file of unknown size, the known-bad hash), and an error reading
// the layer sticks, so it stops the scan rather than being taken for an
// unreadable archive.
type restReader struct {
	w   *walker
	fw  *fileWindows
	err error
}

func (r *restReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	fw := r.fw
	if fw.size >= 0 {
		if fw.read >= fw.size {
			return 0, io.EOF
		}
		p = p[:min(int64(len(p)), fw.size-fw.read)]
	}
	n, err := fw.r.Read(p)
	fw.read += int64(n)
	if fw.sum != nil {
		fw.sum.Write(p[:n])
	}
	if fw.compSpool != nil {
		if werr := fw.compSpool.write(p[:n]); werr != nil {
			r.err = werr
			return n, werr
		}
	}
	switch maxBytes := r.w.s.limits.MaxFileBytes; {
	case fw.size < 0 && fw.read > maxBytes:
		r.err = limitError("file %s is more than MaxFileBytes %d", fw.it.shown(), maxBytes)
	case err == io.EOF && fw.size >= 0 && fw.read < fw.size, err != nil && err != io.EOF:
		r.err = fmt.Errorf("read %s: %w", fw.it.shown(), noEOF(err))
	}
	if r.err != nil {
		return n, r.err
	}
	return n, err
}

// streamArchive unpacks a tar or a compressed stream larger than one
// window from the stream: the first window (fw.head, already scanned as
// bytes) and the rest of the file. Members are scanned as for a small
// archive; an archive that cannot be read to its end is reported as
// ArchiveUnreadable. Whatever the file holds past the point the unpacker
// read to (a tar's trailer, bytes after a compressed stream, or all of
// what follows a corrupt block) is scanned as bytes, so no byte of the
// file goes unscanned.
func (w *walker) streamArchive(fw *fileWindows) error {
	it := fw.it
	head := bytes.NewReader(fw.head.b[:fw.headLen])
	rest := &restReader{w: w, fw: fw}
	body := bufio.NewReaderSize(io.MultiReader(head, rest), 64<<10)
	// A decoder reads ahead of where it stops: when it stops early, the
	// bytes it took last are scanned again with what it left.
	taken := &recentReader{r: body, ring: make([]byte, decoderReadAhead)}
	var err error
	var extra int64          // read past a cpio's end (see walkCpio)
	read := map[int64]bool{} // the gzip members its reading goes on into
	switch fw.kind {
	case archiveTar:
		err = w.walkMembers(it, &unarchiveReader{r: taken, w: w, what: "tar " + it.shown()}, nil)
	case archiveStream:
		w.onMember = func(off int64) { read[off] = true }
		err = w.walkStream(it, bufio.NewReader(taken))
		w.onMember = nil
	case archiveAr:
		err = w.walkAr(it, &unarchiveReader{r: taken, w: w, what: "ar " + it.shown()})
	case archiveCpio:
		extra, err = w.walkCpio(it, &unarchiveReader{r: taken, w: w, what: "cpio " + it.shown()})
	case archiveForeign:
		err = foreignError(fw.head.b[:fw.headLen])
	}
	if rest.err != nil {
		return rest.err
	}
	whole := err == nil
	left := it
	// What a spooled compressed file leaves is searched with the rest
	// of the spool (see largeown.go).
	left.opaque, left.leftover, left.base = true, fw.compSpool == nil && (fw.kind == archiveStream || fw.kind == archiveTar || fw.kind == archiveCpio), taken.n
	lw := &fileWindows{it: left, r: body, size: -1}
	defer lw.release()
	if err != nil {
		if err := w.settle(it, err); err != nil {
			return err
		}
		recent := taken.recent()
		lw.r = io.MultiReader(bytes.NewReader(recent), body)
		lw.it.base -= int64(len(recent))
	} else if back := leftoverBack(taken.recent(), int(extra), body); back > 0 {
		recent := taken.recent()
		lw.r = io.MultiReader(bytes.NewReader(recent[len(recent)-back:]), body)
		lw.it.base -= int64(back)
	}
	if err := w.windows(lw); err != nil {
		return err
	}
	if lw.it.leftover {
		// What lw holds behind its start.
		if _, err := w.finishWindows(lw); err != nil {
			return err
		}
	}
	if rest.err != nil || fw.compSpool == nil {
		return rest.err
	}
	own, err := w.ownOfLarge(fw.compSpool, fw.read, nestedCompression(fw.head.b[:fw.headLen]), read, whole)
	if err != nil {
		return err
	}
	if fw.kind == archiveStream && !whole {
		// Not read to its end: what zstd -dc or gzip -dc writes of it
		// may join frames of other formats, as for a file in a window.
		own.joined = map[int64]bool{}
		if err := w.walkJoinedSpooled(it, fw.compSpool, 0, fw.read, own.joined); err != nil {
			return err
		}
	}
	return w.searchLargeCompressed(it, fw.compSpool, fw.read, own)
}

// leftoverBack is how many of the last bytes an archive's walk read
// (recent) its leftover starts with: the extra bytes a cpio's walk read
// past its end, and, when what follows the archive starts as a stream or
// a zip entry, the byte before, since the leftover is searched behind its
// start, never at it (a stream right after a tar's end blocks). A program
// there starts the leftover's first window, for rules on a file's first
// bytes.
func leftoverBack(recent []byte, extra int, body *bufio.Reader) int {
	back := min(extra, len(recent))
	next, _ := body.Peek(2 * blockSize)
	next = append(bytes.Clone(recent[len(recent)-back:]), next...)
	if back < len(recent) && (streamStart(next) || bytes.HasPrefix(next, zipMagic)) {
		back++
	}
	return back
}

// decoderReadAhead is more than any decoder reads ahead of what it
// decodes (ISA-L's input buffer is 256 KiB; zstd's blocks are at most
// 128 KiB).
const decoderReadAhead = 1 << 20

// recentReader keeps the last len(ring) bytes read through it.
type recentReader struct {
	r    io.Reader
	ring []byte
	pos  int
	full bool
	n    int64 // bytes read through it
}

func (rr *recentReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.n += int64(n)
	b, size := p[:n], len(rr.ring)
	if len(b) >= size {
		copy(rr.ring, b[len(b)-size:])
		rr.pos, rr.full = 0, true
		return n, err
	}
	if rr.pos+len(b) >= size {
		rr.full = true
	}
	if c := copy(rr.ring[rr.pos:], b); c < len(b) {
		copy(rr.ring, b[c:])
	}
	rr.pos = (rr.pos + len(b)) % size
	return n, err
}

// recent returns the bytes kept, oldest first.
func (rr *recentReader) recent() []byte {
	if !rr.full {
		return rr.ring[:rr.pos]
	}
	return append(rr.ring[rr.pos:len(rr.ring):len(rr.ring)], rr.ring[:rr.pos]...)
}

// spool is a temporary file a file larger than one window is written to
// as it is scanned: a zip, read from its directory at its end, and a
// file searched behind its start (see searchSpooled). It is removed from
// its folder as soon as it is created, so nothing is left behind whatever
// happens to the process.
type spool struct {
	f    *os.File
	name string // the file it holds, for errors
	bad  error  // the first error reading it back
}

// newSpool creates a spool for the file shown as name, in os.TempDir
// ($TMPDIR).
func newSpool(name string) (*spool, error) {
	f, err := os.CreateTemp("", "pullgate-spool-*")
	if err != nil {
		return nil, fmt.Errorf("%w: spool %s to a temporary file: %w", errSpool, name, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: remove the spool file of %s: %w", errSpool, name, err)
	}
	return &spool{f: f, name: name}, nil
}

func (s *spool) write(b []byte) error {
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("%w: spool %s to a temporary file: %w", errSpool, s.name, err)
	}
	return nil
}

// ReadAt reads the spool back. Its first error sticks (see failed): a
// decoder reading through it takes an error for its stream's end, and
// the scan must stop instead.
func (s *spool) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		// Asked for by the file's own bytes (a zip's directory offset
		// that goes negative): no failure of the spool, which would stop
		// the scan.
		return 0, fmt.Errorf("read the spool of %s at %d: negative offset", s.name, off)
	}
	n, err := s.f.ReadAt(p, off)
	if err != nil {
		if s.bad == nil {
			s.bad = fmt.Errorf("%w: read back the spool of %s: %w", errSpool, s.name, err)
		}
		return n, s.bad
	}
	return n, nil
}

// readAt fills p from off on.
func (s *spool) readAt(p []byte, off int64) error {
	_, err := s.ReadAt(p, off)
	return err
}

// mapped maps the spool's first n bytes, read-only, for a reading that
// needs the file's bytes at hand (see walkJoinedSpooled): they come from
// the page cache as they are touched, never into the heap. unmap ends the
// mapping. The spool is written whole before it is mapped, through the
// same page cache, and unlinked, so nothing shortens it under the mapping.
func (s *spool) mapped(n int64) (data []byte, unmap func(), err error) {
	if n <= 0 {
		return nil, func() {}, nil
	}
	if n != int64(int(n)) {
		return nil, nil, fmt.Errorf("%w: map the spool of %s: %d bytes", errSpool, s.name, n)
	}
	b, err := syscall.Mmap(int(s.f.Fd()), 0, int(n), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: map the spool of %s: %w", errSpool, s.name, err)
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}

// failed is the first error reading the spool back, if any.
func (s *spool) failed() error { return s.bad }

func (s *spool) close() { s.f.Close() }

// unarchiveZip walks a zip of size bytes spooled to sp. Only its first
// window was scanned as bytes: when it is not read whole, all of it is
// scanned as bytes from the spool. A zip that is also a tar (see alsoTar)
// had every window scanned, and is walked as a tar too.
func (w *walker) unarchiveZip(it item, sp *spool, size, text int64, tarToo bool) error {
	unread := w.unread
	head := min(size, w.s.limits.Window) // its first window
	if tarToo {
		head = -1
	}
	zw, err := w.walkZipOf(it, sp.f, size, head, false)
	if !w.hardError(err) {
		// Its own bytes, however its walk ended (see
		// unarchiveZipOwnBytes).
		err = cmp.Or(w.searchSpooledOutside(it, sp, size, text, true, zipOwn(zw)), err)
	}
	if err := w.settle(it, err); err != nil {
		return err
	}
	if tarToo {
		r := &unarchiveReader{r: io.NewSectionReader(sp.f, 0, size), w: w, what: "tar " + it.shown()}
		return w.settle(it, w.walkMembers(it, r, nil))
	}
	if w.unread == unread {
		return nil
	}
	w.rescanned += size
	if w.scanned() > w.s.limits.MaxLayerBytes {
		return limitError("zip %s scanned again takes the bytes scanned past MaxLayerBytes %d", it.shown(), w.s.limits.MaxLayerBytes)
	}
	whole := it
	whole.opaque = true
	lw := &fileWindows{it: whole, r: io.NewSectionReader(sp.f, 0, size), size: -1}
	defer lw.release()
	return w.windows(lw)
}
