package scanner

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pullgate/pullgate/internal/isal"
)

// What behindPrefix and searchSpooled list is read here, once: a gzip
// stream read on into the members after it stands for them.

// tooManyStreams reports a file whose streams behind its start were not
// all read: what says why.
func (w *walker) tooManyStreams(it item, what string) {
	w.archiveFinding(it, ArchiveUnreadableRule, SeverityHigh, what+"; those after them were not read")
}

// ownStream is what reading a compressed file's own stream covered of the
// streams behind its start (see unarchiveOwn).
type ownStream struct {
	read map[int64]bool // where the gzip members it read on into start
	// whole is the file's compression when its stream was read to the
	// file's end, uncompressed otherwise: every stream of that format
	// behind its start is then a stream of its own (xz and bzip2 files
	// may be concatenated), read already.
	whole compression
	// frames are where a zstd file's own frames start (zstd -T and
	// pzstd write many), skippable frames left out (see
	// zstdFrameStarts).
	frames map[int64]bool
	// alone are the frames and streams of its own that are read on
	// their own all the same (see unarchiveBehindOwn).
	alone map[int64]bool
	// joined are where the frames that a reading as zstd -dc or gzip
	// -dc reads them went through start (see walkJoined).
	joined map[int64]bool
}

// covers says whether the stream at off, compressed with c, was read as
// part of the file's own.
func (o ownStream) covers(off int64, c compression) bool {
	switch {
	case o.alone[off]:
		return false
	case o.read[off]:
		return true
	case c == compressedZstd && o.whole == compressedZstd:
		return o.frames[off]
	}
	return o.whole != uncompressed && c == o.whole && c != compressedGzip
}

// unarchiveOwn looks into a, what a file in one window holds itself, and
// says what that read of the streams behind the file's start. A file
// whose own stream is trimmed to its head (see trimmable) and not read to
// its end is then scanned whole as bytes.
func (w *walker) unarchiveOwn(it item, a *archived, trimmed bool) (own ownStream, err error) {
	if a == nil {
		return own, nil
	}
	if a.kind == archiveStream {
		w.onMember = func(off int64) {
			if own.read == nil {
				own.read = map[int64]bool{}
			}
			own.read[off] = true
		}
	}
	unread := w.unread
	err = w.releasingBig(func() error {
		err := w.readArchive(it, a)
		if err == nil && a.kind == archiveStream {
			own.whole = nestedCompression(a.data)
			if own.whole == compressedZstd {
				own.frames = zstdFrameStarts(a.data)
			}
		}
		if err == errTooDeep {
			return nil
		}
		if err := w.settle(it, err); err != nil || a.kind != archiveStream || own.whole != uncompressed {
			return err
		}
		// Not read to its end: what zstd -dc or gzip -dc writes of it may
		// join frames of other formats.
		own.joined = map[int64]bool{}
		return w.walkJoined(it, a.data, 0, own.joined)
	})
	w.onMember = nil
	if err == nil && trimmed && w.unread != unread {
		err = w.scanWhole(it, a.data)
	}
	if err == nil && a.kind != archiveISO && isISO9660(a.data) {
		// An ISO image whose first 32 KiB, free for its author, hold
		// another archive: bsdtar takes it for the image (outside attack
		// round 22b, F2).
		err = w.unarchive(it, &archived{kind: archiveISO, data: a.data})
	}
	switch {
	case err != nil:
	case a.kind == archiveStream:
		err = w.unarchiveBehindOwn(it, a.data, own)
	case (a.kind == archiveTar || a.kind == archiveCpio) && a.end > 0 && a.end < int64(len(a.data)):
		err = w.unarchiveTrailing(it, a.data, a.end)
	}
	return own, err
}

// unarchiveBehindOwn looks into what data, a compressed file whose own
// stream was read, holds behind its start (see behindPrefix), but for the
// streams that reading covers, which are neither tried nor counted: what
// follows its stream (other bytes, then a stream that tail -c cuts out),
// what lies in its header's fields, and base64 (tail -c | base64 -d). A
// zip at its end was listed with the file (see behindPrefix).
//
// A later zstd frame, xz or bzip2 stream of the file's own, read as part
// of the whole, is read on its own too when its output starts as a file
// (see startsAsAFile), as a gzip member's is (see memberReader): tail -c
// and zstd -dc give it alone, where rules on a file's first bytes see it.
func (w *walker) unarchiveBehindOwn(it item, data []byte, own ownStream) error {
	end, atEnd := zipAtEnd(data)
	covered, herr := w.ownCovered(&own, bytes.NewReader(data), int64(len(data)))
	as, tooMany, err := w.streamsBehind(data, end, atEnd, covered)
	if err = cmp.Or(*herr, err); err != nil {
		return err
	}
	if own.whole == uncompressed {
		as = appendRawArchives(as, data)
	}
	as = appendPayloads(as, data)
	return w.unarchiveAll(it, as, tooMany, int64(len(data)), own)
}

// unarchiveTrailing looks into what follows the end of the tar data, at
// end: tar x stops at its end, and tail -c cuts out a stream, a zip entry
// or base64 placed after it. A zip at the file's end was read already (see
// behindPrefix).
func (w *walker) unarchiveTrailing(it item, data []byte, end int64) error {
	// What streamsBehind lists starts after its data's first byte.
	from := end - 1
	tail := data[from:]
	zend, atEnd := zipAtEnd(tail)
	as, tooMany, err := w.streamsBehind(tail, zend, atEnd, nil)
	if err != nil {
		return err
	}
	if c := nestedCompression(tail[1:]); weakSignature(c) && streamStart(tail[1:]) {
		// Right at the end, as what an initramfs's next archive is
		// compressed with (an .lzma one too, which is looked for behind
		// text only otherwise).
		as = append(as, &archived{kind: archiveStream, data: tail[1:], off: 1, at: fmt.Sprintf("%v@1", c)})
	}
	as = appendPayloads(appendRawArchives(as, tail), tail)
	it.base = from
	return w.unarchiveAll(it, as, tooMany, int64(len(tail)), ownStream{})
}

// unarchiveAll looks into each archive of as, found in the file it of
// size bytes (see behindPrefix), up to maxBehind(size) of them, but for
// the streams the file's own covered; tooMany says more were not tried or
// listed.
//
// A gzip stream goes on into the members that follow it, as gzip -dc
// does: a member that one before it was read on into, its output read
// whole, is not read again on its own, or a run of n members (a Chromium
// resource pack holds hundreds) would be read n²/2 times.
func (w *walker) unarchiveAll(it item, as []*archived, tooMany bool, size int64, own ownStream) error {
	read := own.read // where such members start
	joined := w.joined
	w.joined = own.joined
	if w.joined == nil {
		w.joined = map[int64]bool{}
	}
	defer func() { w.joined = joined }()
	n := 0
	for _, a := range as {
		if a.kind == archiveStream && (read[a.off] || own.covers(a.off, nestedCompression(a.data))) {
			continue
		}
		if it.base != 0 && a.at != "" {
			// Named by its offset in the file, not in the leftover.
			a.at = strings.TrimSuffix(a.at, fmt.Sprintf("@%d", a.off)) + fmt.Sprintf("@%d", it.base+a.off)
		}
		if n++; n > maxBehind(size) {
			w.tooManyStreams(it, fmt.Sprintf("more compressed streams behind the file's start than are read (%d)", maxBehind(size)))
			return nil
		}
		if a.kind == archiveStream {
			// Only a stream's own members: a zip entry's stream
			// starts past its local header, and its offsets are not
			// the file's.
			w.onMember = func(off int64) {
				if read == nil {
					read = map[int64]bool{}
				}
				read[a.off+off] = true
			}
		}
		err := w.unarchive(it, a)
		w.onMember = nil
		if err != nil {
			return err
		}
	}
	if tooMany {
		w.tooManyStreams(it, fmt.Sprintf("more candidate streams behind the file's start than are tried (%d) or listed (%d)", maxTrials(size), maxListed(size)))
	}
	return nil
}

// memberReader reads a gzip stream and tells done where each of its
// members after the first starts, once that member's output has all been
// read: when the next member starts (ISA-L starts one only when the output
// before it is read, see isal.Reader.OnMember), or when the stream ends,
// with an error or not.
//
// A member whose output starts as a file that is judged by its start does
// is not told: a program, a script, an archive. Read on into, its output
// lies behind the members before it, where rules on a file's first bytes
// and the walk of an archive do not see it; tail -c cuts it out and
// gzip -dc gives it alone. It is read again on its own.
type memberReader struct {
	r       io.Reader
	done    func(off int64)
	pending int64
	has     bool
	head    []byte // the first bytes of the pending member's output
}

// memberHead is how much of a member's output says whether it starts as a
// program, a script or an archive (a tar's magic is at 257).
const memberHead = 2 * blockSize

func newMemberReader(zr *isal.Reader, done func(off int64)) *memberReader {
	m := &memberReader{r: zr, done: done}
	zr.OnMember(func(off int64) {
		m.settle()
		m.pending, m.has = off, true
	})
	return m
}

func (m *memberReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if m.has && len(m.head) < memberHead {
		m.head = append(m.head, p[:min(n, memberHead-len(m.head))]...)
	}
	if err != nil {
		m.settle()
	}
	return n, err
}

// settle tells done of the pending member, if its output was read whole
// where it lies.
func (m *memberReader) settle() {
	if m.has && !startsAsAFile(m.head) {
		m.done(m.pending)
	}
	m.has, m.head = false, m.head[:0]
}

// startsAsAFile says whether head, the start of some output, is judged by
// its start: a program, a script or an archive.
func startsAsAFile(head []byte) bool {
	kind := detectArchive(&item{}, head, int64(len(head)))
	return hasExecMagic(head) || bytes.HasPrefix(head, []byte("#!")) ||
		kind != notArchive && kind != archivePayloads
}

// unarchiveZipOwnBytes looks into the streams data, a zip whose members
// zw read, holds outside its members' data: in its comment, its headers'
// extra fields, the gaps between its entries and after its end record,
// where unzip never looks and tail -c cuts them out (outside attack round
// 19). What lies in a member's data is read with the member.
func (w *walker) unarchiveZipOwnBytes(it item, data []byte, zw *zipWalk) error {
	inMember := zw.inMember()
	as, tooMany, err := w.streamsOf(data, func(off int64, _ compression) bool { return inMember(off) })
	if err != nil {
		return err
	}
	// Zip entries with no directory entry (funzip reads one from a
	// pipe), but for the zip's own, and base64.
	for _, at := range zipEntryStarts(data, maxListed(int64(len(data)))) {
		if !inMember(int64(at)) && !zw.entryAt(data[at:], int64(at)) {
			as = append(as, &archived{kind: archiveZip, data: data[at:], off: int64(at), at: fmt.Sprintf("zip@%d", at)})
		}
	}
	if a := contents(archivePayloads, data); a != nil && len(data) >= minBase64Run {
		a.payloads = slices.DeleteFunc(a.payloads, func(p payload) bool { return p.unescaped || inMember(int64(p.offset)) })
		if len(a.payloads) > 0 {
			as = append(as, a)
		}
	}
	return w.unarchiveAll(it, as, tooMany, int64(len(data)), ownStream{})
}

// inMember says whether an offset of the zip lies in the data of a member
// the walk read (see zipWalk.scanned).
func (zw *zipWalk) inMember() func(off int64) bool {
	type span struct{ from, end int64 }
	spans := make([]span, 0, len(zw.scanned))
	for from, s := range zw.scanned {
		spans = append(spans, span{from, s.end})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	// reach[i] is the furthest any of spans[:i+1] ends: spans may overlap.
	reach := make([]int64, len(spans))
	for i, s := range spans {
		reach[i] = s.end
		if i > 0 {
			reach[i] = max(reach[i], reach[i-1])
		}
	}
	return func(off int64) bool {
		i, _ := slices.BinarySearchFunc(spans, off, func(s span, off int64) int { return cmp.Compare(s.from, off+1) })
		return i > 0 && off < reach[i-1]
	}
}

// entryAt says whether h, at off in the zip, is the local header of one
// of the members the walk read, or failed to.
func (zw *zipWalk) entryAt(h []byte, off int64) bool {
	if len(h) < 30 {
		return true // no entry at all
	}
	dataOff := off + 30 + int64(binary.LittleEndian.Uint16(h[26:])) + int64(binary.LittleEndian.Uint16(h[28:]))
	_, own := zw.scanned[dataOff]
	return own || zw.failed[dataOff]
}

// decodedStartsAsAFile says whether what the stream of compression c
// read from r decodes to starts as a file (see startsAsAFile). What it
// decodes counts against MaxLayerBytes, as a trial's does.
func (w *walker) decodedStartsAsAFile(c compression, r io.Reader) (bool, error) {
	head, err := w.decodedHead(c, r)
	return err == nil && startsAsAFile(head), err
}

// ownCovered is what of the streams behind the start of a compressed
// file, read from ra (size bytes), its own reading covered (see
// ownStream.covers), but for a later frame or stream of its own whose
// output starts as a file, which is read on its own too (own.alone,
// see unarchiveBehindOwn). Those head trials count against maxTrials;
// past it every frame is tried as any other candidate. The first error
// a trial met is left in *err.
func (w *walker) ownCovered(own *ownStream, ra io.ReaderAt, size int64) (covered func(off int64, c compression) bool, err *error) {
	own.alone = map[int64]bool{}
	heads := 0
	err = new(error)
	return func(off int64, c compression) bool {
		if c == uncompressed || c == compressedGzip || !own.covers(off, c) {
			return own.covers(off, c)
		}
		file := true
		if heads++; heads <= maxTrials(size) {
			var terr error
			file, terr = w.decodedStartsAsAFile(c, io.NewSectionReader(ra, off, size-off))
			*err = cmp.Or(*err, terr)
		}
		own.alone[off] = file
		return !file
	}, err
}
