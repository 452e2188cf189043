package scanner

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/pullgate/pullgate/scanner/upx"
)

// fileWindows is the state of one large file streamed as windows.
type fileWindows struct {
	it   item
	r    io.Reader
	size int64 // from the tar header; -1 for a stream of unknown length
	read int64
	sum  hash.Hash // nil without a known-bad list

	u     *upx.Unpacked
	uerr  error
	whole []byte // the file so far, when it must be unpacked whole
	hold  bool

	kind    archiveKind
	archive *archived // what the file holds, when it fits in one window
	trimmed bool      // only the head of its one window is scanned as bytes
	// A tar or compressed stream larger than one window is unpacked from
	// the stream after its first window, whose copy head is; a larger zip
	// is spooled to a temporary file as its windows go by (see large.go).
	head    *buffer
	headLen int
	spool   *spool
	tarToo  bool // a spooled zip that is also a tar: every window scanned, walked as both
	isoToo  bool // a spooled zip that is also an ISO image: the same
	// behind is what a file in one window holds behind a prefix (see
	// behindPrefix); every window of it is scanned as bytes. tooMany:
	// not all of it is listed.
	behind  []*archived
	tooMany bool
	// A larger file that is no archive is spooled as its windows go by,
	// and searched behind its start from the spool at its end (see
	// searchSpooled).
	searched *spool
	text     largeText
	// A larger compressed file is spooled as it is read, and searched
	// behind its start once its stream is read (see largeown.go).
	compSpool *spool
	// cut is the error that ended a stream of unknown length after some
	// of its bytes (see readWindow), returned once they are scanned.
	cut error
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
	fw := &fileWindows{it: it, r: r, size: size}
	defer fw.release()
	if w.st.rs.knownBad != nil {
		fw.sum = sha256.New()
	}
	if err := w.windows(fw); err != nil {
		return false, err
	}
	if fw.head != nil {
		if err := w.streamArchive(fw); err != nil {
			return false, err
		}
	}
	if !it.opaque {
		w.bytes += fw.read
	}
	done, err := w.finishWindows(fw)
	if err == nil {
		err = fw.cut
	}
	return done, err
}

// windows submits the windows of fw until the file ends, or until its
// first window shows a large archive to unpack as a stream.
func (w *walker) windows(fw *fileWindows) error {
	w.tail = w.tail[:0]
	for first := true; ; first = false {
		last, err := w.nextWindow(fw, first)
		if err != nil || last || fw.head != nil {
			return err
		}
	}
}

// nextWindow reads one window of the file, starting with the overlap
// carried from the previous one, and submits it. It reports whether the
// file ended.
func (w *walker) nextWindow(fw *fileWindows, first bool) (bool, error) {
	if err := w.st.acquire(); err != nil {
		return false, err
	}
	buf := w.s.windows.get()
	n := copy(buf.b, w.tail)
	m, last, err := w.readWindow(fw, buf.b[n:])
	if err == nil && last && m == 0 && !first {
		// An unsized stream ended exactly at a window boundary.
		buf.put()
		w.st.release()
		return true, nil
	}
	if err != nil {
		buf.put()
		w.st.release()
		return false, err
	}
	data := buf.b[:n+m]
	if fw.sum != nil {
		// Hashed before the window goes to a worker, which gives the
		// buffer back to the pool when done.
		fw.sum.Write(data[n:])
	}
	if first {
		if err := w.firstWindow(fw, data, last); err != nil {
			buf.put()
			w.st.release()
			return false, err
		}
	}
	if fw.hold {
		fw.whole = append(fw.whole, data[n:]...)
	}
	if fw.searched != nil {
		if !first {
			fw.text.extend(data[n:])
		}
		if err := fw.searched.write(data[n:]); err != nil {
			buf.put()
			w.st.release()
			return false, err
		}
	}
	if fw.spool != nil {
		if err := fw.spool.write(data[n:]); err != nil {
			buf.put()
			w.st.release()
			return false, err
		}
	}
	if fw.searched != nil {
		// Scanned whole from its spool once it is in (see scanSpooled).
		buf.put()
		w.st.release()
		return last, nil
	}
	if fw.spool != nil && !first && !fw.tarToo && !fw.isoToo {
		// A zip is scanned as bytes for its first window only, unless it
		// is not read whole (finishWindows scans the spool then).
		buf.put()
		w.st.release()
		return last, nil
	}
	if !last {
		w.tail = append(w.tail[:0], data[len(data)-windowOverlap:]...)
	}
	wi := fw.it
	wi.data = data
	if fw.trimmed {
		wi.data = data[:archiveHead]
	}
	if err := w.s.submit(&job{scan: w.st, buf: buf, items: []item{wi}}); err != nil {
		return false, err
	}
	return last, nil
}

// readWindow reads into free what is left of the window and reports how
// many bytes it read and whether the file ended.
func (w *walker) readWindow(fw *fileWindows, free []byte) (int, bool, error) {
	want := len(free)
	if fw.size >= 0 {
		want = int(min(int64(want), fw.size-fw.read))
	}
	m, err := io.ReadFull(fw.r, free[:want])
	fw.read += int64(m)
	last := fw.size >= 0 && fw.read == fw.size
	if err != nil {
		if w.hardError(err) || fw.size >= 0 && m == 0 {
			return m, last, fmt.Errorf("read %s: %w", fw.it.shown(), noEOF(err))
		}
		if fw.size >= 0 {
			// Shorter than its header says: what there is is scanned
			// first, as for a stream that fails.
			fw.cut = fmt.Errorf("read %s: %w", fw.it.shown(), noEOF(err))
			return m, true, nil
		}
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			// A decoded stream that fails (other data after it, a cut
			// or wrong checksum) ends here: its tool writes what it
			// decoded before it complains, so that is scanned first.
			fw.cut = fmt.Errorf("read %s: %w", fw.it.shown(), err)
		}
		last = true
	}
	if maxBytes := w.s.limits.MaxFileBytes; fw.size < 0 && fw.read > maxBytes {
		return m, last, limitError("file %s is more than MaxFileBytes %d", fw.it.shown(), maxBytes)
	}
	return m, last, nil
}

// firstWindow decides from the file's first window, before it goes to a
// worker, whether the file is executable, packed or an archive.
func (w *walker) firstWindow(fw *fileWindows, data []byte, last bool) error {
	fw.it.exec = fw.it.exec || hasExecMagic(data)
	if isELF(data) {
		fw.u, fw.uerr = w.unpack(data)
		// Too large now is too large at the end: the limit only
		// shrinks as the file is read.
		if !last && fw.uerr != nil && !errors.Is(fw.uerr, upx.ErrNotPacked) && !errors.Is(fw.uerr, upx.ErrTooLarge) {
			fw.u, fw.uerr, fw.hold = nil, nil, true
			if fw.size >= 0 {
				fw.whole = make([]byte, 0, fw.size)
			}
		}
	}
	if fw.it.opaque && !fw.it.leftover {
		return nil
	}
	switch {
	case !fw.it.opaque:
		fw.kind = detectArchive(&fw.it, data, fw.size)
	case fw.it.leftover:
		// Searched for streams and base64 behind its start, as text
		// of unknown size is.
		fw.kind = archivePayloads
	}
	if last {
		// An archive behind something else, as in addSmall.
		var err error
		if fw.behind, fw.tooMany, err = w.behindPrefix(data, fw.kind); err != nil {
			return err
		}
	}
	switch {
	case last:
		if fw.kind != notArchive {
			fw.archive = contents(fw.kind, data)
			fw.trimmed = w.trimmable(&fw.it, fw.archive, len(data))
		}
	case fw.kind == notArchive, fw.kind == archivePayloads, fw.kind == archiveISO:
		// Searched behind its start, and for base64 if it is text, from
		// a spool once its last window is scanned; an ISO image is walked
		// from that spool too.
		sp, err := newSpool(fw.it.shown())
		if err != nil {
			return err
		}
		fw.searched = sp
		fw.text.start(data)
	case fw.it.nest >= w.s.limits.MaxArchiveDepth:
		// Reported as too deep by finishWindows.
	case fw.kind == archiveZip:
		// A zip is read from its directory at the end: the file is kept
		// on disk, not in memory, until its last window.
		sp, err := newSpool(fw.it.shown())
		if err != nil {
			return err
		}
		fw.spool = sp
		fw.tarToo = alsoTar(fw.kind, data)
		fw.isoToo = isISO9660(data)
	default:
		// A tar or a compressed stream is unpacked as it is read: the
		// first window is kept, the rest read by the unpacker. A
		// compressed file is spooled too, to be searched behind its
		// start (see largeown.go).
		fw.head = w.s.windows.get()
		fw.headLen = copy(fw.head.b, data)
		if fw.kind == archiveStream {
			sp, err := newSpool(fw.it.shown())
			if err != nil {
				return err
			}
			fw.compSpool = sp
			return sp.write(data)
		}
	}
	return nil
}

// release gives back what fw holds beyond its windows.
func (fw *fileWindows) release() {
	if fw.head != nil {
		fw.head.put()
		fw.head = nil
	}
	if fw.spool != nil {
		fw.spool.close()
		fw.spool = nil
	}
	if fw.searched != nil {
		fw.searched.close()
		fw.searched = nil
	}
	if fw.compSpool != nil {
		fw.compSpool.close()
		fw.compSpool = nil
	}
}

// finishWindows checks the whole file once all its windows are submitted:
// its hash against the known-bad list, what it unpacks to, and what it
// holds as an archive. It returns whether the file was taken as
// executable.
func (w *walker) finishWindows(fw *fileWindows) (bool, error) {
	it := fw.it
	if fw.sum != nil {
		var s [sha256.Size]byte
		if f, ok := w.st.rs.knownBad.finding([sha256.Size]byte(fw.sum.Sum(s[:0])), it.shown()); ok {
			f.File = it.file()
			w.st.add(f)
		}
	}
	if fw.hold {
		fw.u, fw.uerr = w.unpack(fw.whole)
		fw.whole = nil
	}
	if err := w.scanUnpacked(it, fw.u, fw.uerr); err != nil {
		return false, err
	}
	// The file's own archive first: what its stream reads is not read
	// again behind its start.
	own, err := w.unarchiveOwn(it, fw.archive, fw.trimmed)
	if err != nil {
		return false, err
	}
	if err := w.unarchiveAll(it, fw.behind, fw.tooMany, fw.read, own); err != nil {
		return false, err
	}
	if fw.searched != nil {
		if err := w.scanSpooled(it, fw.searched); err != nil {
			return false, err
		}
		if err := w.searchSpooled(it, fw.searched, fw.read, fw.text.end, fw.kind == archivePayloads); err != nil {
			return false, err
		}
		if fw.kind == archiveISO {
			if err := w.unarchive(it, &archived{kind: archiveISO, spooled: io.NewSectionReader(fw.searched.f, 0, fw.read)}); err != nil {
				return false, err
			}
		}
	}
	switch {
	case fw.archive != nil:
		// Read above.
	case fw.spool != nil:
		if err := w.unarchiveZip(it, fw.spool, fw.read, fw.text.end, fw.tarToo); err != nil {
			return false, err
		}
		if fw.isoToo { // see unarchiveOwn
			if err := w.unarchive(it, &archived{kind: archiveISO, spooled: io.NewSectionReader(fw.spool.f, 0, fw.read)}); err != nil {
				return false, err
			}
		}
	case fw.kind != notArchive && fw.kind != archivePayloads && it.nest >= w.s.limits.MaxArchiveDepth:
		// Neither streamed nor spooled: reported as too deep.
		if err := w.unarchive(it, &archived{kind: fw.kind}); err != nil {
			return false, err
		}
	}
	return it.exec, nil
}
