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
	w.tail = w.tail[:0]
	if w.st.rs.knownBad != nil {
		fw.sum = sha256.New()
	}
	for first := true; ; first = false {
		last, err := w.nextWindow(fw, first)
		if err != nil {
			return false, err
		}
		if last {
			break
		}
	}
	w.bytes += fw.read
	return w.finishWindows(fw)
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
		w.firstWindow(fw, data, last)
	}
	if fw.hold {
		fw.whole = append(fw.whole, data[n:]...)
	}
	if !last {
		w.tail = append(w.tail[:0], data[len(data)-windowOverlap:]...)
	}
	wi := fw.it
	wi.data = data
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
		if fw.size >= 0 || (err != io.EOF && err != io.ErrUnexpectedEOF) {
			return m, last, fmt.Errorf("read %s: %w", fw.it.shown(), noEOF(err))
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
func (w *walker) firstWindow(fw *fileWindows, data []byte, last bool) {
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
	// Only archives whole in one window are unpacked: a zip is read from
	// its end, and holding larger files whole would let one layer pin
	// MaxFileBytes of memory.
	if fw.kind = detectArchive(&fw.it, data, fw.size); fw.kind != notArchive && last {
		fw.archive = contents(fw.kind, data)
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
	switch {
	case fw.archive != nil:
		if err := w.unarchive(it, fw.archive); err != nil {
			return false, err
		}
	case fw.kind != notArchive && fw.kind != archiveScript:
		w.archiveFinding(it, ArchiveTooLargeRule, SeverityLow,
			fmt.Sprintf("archive larger than the scan window of %d bytes: its bytes were scanned as they are, but it was not unpacked", w.s.limits.Window))
	}
	return it.exec, nil
}
