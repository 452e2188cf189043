package scanner

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Rules of the findings the scanner reports about archives it could not
// look into; their category is CategoryArchive.
const (
	// ArchiveTooDeepRule: an archive (or an encoded payload) nested deeper
	// than Limits.MaxArchiveDepth. Its bytes are scanned as they are, but
	// what it holds is not, so it refuses by default (high).
	ArchiveTooDeepRule = "ArchiveTooDeep"
	// ArchiveUnreadableRule: an archive that stops decoding before its
	// end (low: what was decoded is scanned, and no client decodes more),
	// or a zip member that cannot be opened at all, encrypted or of an
	// unknown method (medium: refuses together with another medium
	// indicator).
	ArchiveUnreadableRule = "ArchiveUnreadable"
)

// archiveKind is what detectArchive found at the start of a file.
type archiveKind int

const (
	notArchive      archiveKind = iota
	archiveStream               // gzip, xz, bzip2 or zstd: one stream, a tar or one file
	archiveTar                  // a POSIX or GNU tar
	archiveZip                  // zip and every format built on it (jar, war, whl, apk, ...)
	archivePayloads             // any other file, which may carry base64 payloads
	archiveAr                   // an ar archive: a Debian package, a static library
	archiveCpio                 // a cpio archive: an initramfs image, an rpm's payload
	archiveForeign              // an archive bsdtar unpacks and pullgate does not read: refused
	archiveISO                  // an ISO 9660 image (see walkISO)
)

var (
	zipMagic      = []byte("PK\x03\x04")
	zipEmptyMagic = []byte("PK\x05\x06")
	ustarMagic    = []byte("ustar")
	// bzip2's first block or its end-of-stream marker follows "BZh1".."BZh9",
	// so three letters of text are not taken for bzip2.
	bzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	bzip2End   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// detectArchive says whether a file starting with head (its first bytes,
// at least its first 512 when it has them) is an archive the scanner
// looks into, by magic bytes only, so files that are none cost a few
// comparisons; any other file large enough to carry a base64 payload is
// archivePayloads. size is the file's size (< 0 when unknown).
func detectArchive(it *item, head []byte, size int64) archiveKind {
	switch {
	case len(head) < 4:
		return notArchive
	case bytes.HasPrefix(head, zipMagic), bytes.HasPrefix(head, zipEmptyMagic):
		return archiveZip
	case len(head) >= 263 && bytes.Equal(head[257:262], ustarMagic) && isTar(head[:min(len(head), 2*blockSize)]),
		isV7Tar(head):
		return archiveTar
	case isDeb(head):
		return archiveAr
	case isCpio(head):
		return archiveCpio
	case streamStart(head):
		return archiveStream
	case foreignArchive(head) != "" && !(it.unaligned && bytes.HasPrefix(head, weakMagic)):
		return archiveForeign
	case isISO9660(head):
		return archiveISO
	}
	// Base64 is looked for in every other file, whatever its name or
	// first line: a payload may lie in a data file ("blob", "x.b64") that
	// a script decodes. Whether it holds any is decided by content, when
	// the file is read (see base64Payloads), at a few dozen bytes per
	// 2 KiB for a file that holds none.
	if size < 0 || size >= minBase64Run {
		return archivePayloads
	}
	return notArchive
}

// member is the item for content found inside it: an archive member
// named name (relative, cleaned), or a payload decoded from it. Rules see
// the member as if it were unpacked at the root ("/" + name, its own base
// name and extension, its own exec bit), so rules on names apply to it;
// findings name the whole path, "/opt/x/a.tar.gz!xmrig-6.21.0/xmrig", and
// their File is the layer's file.
func (it *item) member(name string, exec bool) item {
	base := path.Base(name)
	return item{
		path:  "/" + name,
		name:  base,
		ext:   extension(base),
		exec:  exec,
		where: it.shown() + "!" + name,
		outer: cmp.Or(it.outer, it.path),
		nest:  it.nest + 1,
	}
}

// memberName cleans an archive member's name into a relative path.
func memberName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// scanned is every byte this walk has read, scanned again or produced by
// unpacking so far: what MaxLayerBytes bounds.
func (w *walker) scanned() int64 {
	return w.count.n + w.rescanned + w.unpacked + w.unarchived
}

// unarchiveReader counts the bytes unpacking produces against
// MaxLayerBytes.
type unarchiveReader struct {
	r    io.Reader
	w    *walker
	what string
}

func (u *unarchiveReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.w.unarchived += int64(n)
	if u.w.scanned() > u.w.s.limits.MaxLayerBytes {
		return n, limitError("%s unpacks to more than what is left of MaxLayerBytes %d", u.what, u.w.s.limits.MaxLayerBytes)
	}
	return n, err
}

// contents takes what unarchive needs of a file of kind whole in data,
// before data goes to a worker that recycles it: a copy of an archive, or
// the decoded base64 payloads of any other file (nil when it has none, so
// an ordinary file costs a probe and no allocation).
func contents(kind archiveKind, data []byte) *archived {
	if kind == archivePayloads {
		if p := base64Payloads(data); len(p) > 0 {
			return &archived{kind: kind, payloads: p}
		}
		return nil
	}
	return &archived{kind: kind, data: bytes.Clone(data), tar: alsoTar(kind, data)}
}

// alsoTar says whether head, the start of a file of kind, is a zip that is
// also a tar as archive/tar reads it: a tar whose first member's name
// starts with a zip's local header. tar reads such a file from its first
// byte, and what it unpacks is not among the zip's members, so the file
// is walked as both, and scanned whole as bytes (never trimmed).
func alsoTar(kind archiveKind, head []byte) bool {
	return kind == archiveZip && isTar(head[:min(len(head), 2*blockSize)])
}

// archived is a file to look into once it has been submitted.
type archived struct {
	kind     archiveKind
	data     []byte    // the archive, a copy
	tar      bool      // a zip that is also a tar (see alsoTar)
	trimmed  bool      // only its head is scanned as bytes (see trimmable)
	payloads []payload // a file's base64 payloads, decoded as they are scanned
	// at, when set, names where in its file the archive starts
	// ("gzip@1234", see behindPrefix): what it holds is named under it.
	at  string
	off int64 // and where, for a stream (see unarchiveAll)
	// end, for a tar in memory once read, is where its walk stopped:
	// what follows its end (see unarchiveTrailing).
	end int64
	// spooled, when set, holds the archive in place of data: a zip or a
	// stream behind the start of a file larger than one window, read
	// from the file's spool (see searchSpooled).
	spooled *io.SectionReader
	// cut says data ends where bytes of the file are missing (see
	// tarOwn.gap): a stream that runs on past it is refused.
	cut bool
}

// unarchive looks into the file it (a): each member, or each decoded
// payload, is scanned as a file of its own under it (see item.member), and
// looked into in turn up to MaxArchiveDepth. Beyond that depth it reports
// ArchiveTooDeep. Every byte unpacked counts against MaxLayerBytes, every
// member against MaxFiles and MaxFileBytes; those fail the layer with
// ErrLimit. Content that cannot be decoded to its end is scanned as far as
// it decodes and reported as ArchiveUnreadable.
func (w *walker) unarchive(it item, a *archived) error {
	if a == nil {
		return nil
	}
	return w.releasingBig(func() error { return w.unarchiveHeld(it, a) })
}

// unarchiveHeld is unarchive, once a is known to be something.
func (w *walker) unarchiveHeld(it item, a *archived) error {
	if a.at != "" {
		it = it.member(a.at, it.exec)
	}
	err := w.readArchive(it, a)
	if err == errTooDeep {
		return nil
	}
	whole := err == nil
	if err := w.settle(it, err); err != nil || whole || a.kind != archiveStream {
		return err
	}
	// Not read to its end: what zstd -dc or gzip -dc writes of it may
	// join frames of other formats (tail -c | zstd -dc).
	var read map[int64]bool
	if a.at != "" { // a stream behind the start of the file unarchiveAll reads
		read = w.joined
	}
	if a.spooled != nil {
		ra, off, n := a.spooled.Outer()
		if sp, ok := ra.(*spool); ok {
			return w.walkJoinedSpooled(it, sp, off, n, read)
		}
		return nil
	}
	return w.walkJoined(it, a.data, a.off, read)
}

// readArchive looks into a, as unarchiveHeld does, and returns what ended
// it: nil when a was read to its end, an error for settle otherwise.
func (w *walker) readArchive(it item, a *archived) error {
	if it.nest >= w.s.limits.MaxArchiveDepth {
		if w.weakNoStream(a) {
			return nil
		}
		w.archiveFinding(it, ArchiveTooDeepRule, SeverityHigh,
			fmt.Sprintf("archive or encoded payload nested more than MaxArchiveDepth %d deep, so what it holds was not scanned", w.s.limits.MaxArchiveDepth))
		return errTooDeep
	}

	kind, data, payloads := a.kind, a.data, a.payloads
	ra, size := io.ReaderAt(bytes.NewReader(data)), int64(len(data))
	if a.spooled != nil {
		ra, size = a.spooled, a.spooled.Size()
	}
	var err error
	switch kind {
	case archiveZip:
		head := int64(-1)
		if a.trimmed {
			head = archiveHead
		}
		var zw *zipWalk
		zw, err = w.walkZipOf(it, ra, size, head, strings.HasPrefix(a.at, "zip@"))
		if a.at == "" && a.spooled == nil && !w.hardError(err) {
			// A zip's own bytes: its comment, extra fields, gaps and what
			// follows its end record, for tail -c to cut a stream out of,
			// however its own walk ended.
			err = cmp.Or(w.unarchiveZipOwnBytes(it, data, zw), err)
		}
		if a.tar {
			if err = w.settle(it, err); err == nil {
				err = w.walkMembers(it, &unarchiveReader{r: bytes.NewReader(data), w: w, what: "tar " + it.shown()}, nil)
			}
		}
	case archiveTar:
		sr := io.NewSectionReader(ra, 0, size)
		err = w.walkMembers(it, &unarchiveReader{r: sr, w: w, what: "tar " + it.shown()}, nil)
		a.end, _ = sr.Seek(0, io.SeekCurrent)
	case archiveStream:
		err = w.walkStream(it, bufio.NewReader(io.NewSectionReader(ra, 0, size)))
	case archiveAr:
		err = w.walkAr(it, &unarchiveReader{r: bytes.NewReader(data), w: w, what: "ar " + it.shown()})
	case archiveCpio:
		sr := io.NewSectionReader(ra, 0, size)
		var extra int64
		extra, err = w.walkCpio(it, &unarchiveReader{r: sr, w: w, what: "cpio " + it.shown()})
		a.end, _ = sr.Seek(0, io.SeekCurrent)
		a.end -= extra
	case archiveForeign:
		err = foreignError(data)
	case archiveISO:
		err = w.walkISO(it, ra, size)
	case archivePayloads:
		for len(w.decoded) <= it.nest {
			w.decoded = append(w.decoded, nil)
		}
		for _, p := range payloads {
			// Scanning copies the bytes: one buffer serves every payload.
			dec := p.decodeInto(w.decoded[it.nest])
			w.decoded[it.nest] = dec
			if len(dec) == 0 {
				continue
			}
			child := it.member(p.name(it.base), false)
			child.unaligned = !p.whole()
			r := &unarchiveReader{r: bytes.NewReader(dec), w: w, what: "base64 payload " + child.where}
			if _, err = w.scanFile(child, r, int64(len(dec))); err != nil {
				break
			}
		}
	}
	if a.cut && err != nil && !w.hardError(err) && errors.Is(err, io.ErrUnexpectedEOF) {
		err = cutError(a.at)
	}
	if a.at != "" && err != nil && !w.hardError(err) && !errors.Is(err, errUnsupported) {
		// A stream behind a prefix ends where its own format does, and
		// programs carry such streams followed by other data: what
		// follows it, or a stream that does not decode to its end, is no
		// finding (gzip -d stops at the same place, and the whole file
		// is scanned as bytes). One that cannot be decoded at all is.
		err = quietError{err}
	}
	return err
}

// errTooDeep is readArchive's answer for an archive nested deeper than
// MaxArchiveDepth, reported already as such.
var errTooDeep = errors.New("nested more than MaxArchiveDepth deep")

// chargeDecoder counts a sixteenth of what a decoder allocates to set up
// a bzip2, xz or LZMA stream or xz block (its block buffer or dictionary)
// as unpacked bytes, against MaxLayerBytes. Setting one up costs 1 to 2 ms
// of CPU (a bzip2 stream of 900 kB blocks, an xz block with xz's default
// 8 MiB dictionary), about what YARA takes to scan a sixteenth to a
// twentieth of that allocation, however little the stream holds. So a
// layer of many tiny streams costs at most what scanning MaxLayerBytes
// would, and is refused there, while the 8,000 modules of a kernel
// (1 MiB dictionaries) or thousands of firmware files at xz's default
// stay far from it.
func (w *walker) chargeDecoder(alloc int64) error {
	if err := w.takeBigDecoder(alloc); err != nil {
		return err
	}
	w.unarchived += alloc / 16
	if w.scanned() > w.s.limits.MaxLayerBytes {
		return limitError("the bzip2, xz and LZMA streams in this layer cost more to set up than what is left of MaxLayerBytes %d "+
			"(a sixteenth of each one's buffers counts)", w.s.limits.MaxLayerBytes)
	}
	return nil
}

// settle returns an error met while looking into the archive it when it
// must stop the layer's scan (see hardError); any other error is
// reported as ArchiveUnreadable and the scan goes on.
func (w *walker) settle(it item, err error) error {
	if err == nil || w.hardError(err) {
		return err
	}
	if errors.As(err, new(quietError)) {
		w.unread++ // not read to its end: scanned whole as bytes
		return nil
	}
	w.archiveFinding(it, ArchiveUnreadableRule, unreadableSeverity(err), "archive could not be read to its end: "+err.Error())
	return nil
}

// hardError says whether an error met while unpacking must stop the
// layer's scan (a limit, the scan's end, a worker's error) rather than be
// reported as an unreadable archive.
func (w *walker) hardError(err error) bool {
	return errors.Is(err, ErrLimit) || errors.Is(err, ErrClosed) || errors.Is(err, errSpool) ||
		w.st.ctx.Err() != nil || w.st.firstErr() != nil
}

// archiveHead is how much of a zip or a compressed stream that is
// unpacked whole is scanned as bytes: enough for rules on its name, mode
// and magic (see trimmable).
const archiveHead = 4 << 10

// trimmable says whether it, a zip or a compressed stream whole in memory
// that will be unpacked, may be scanned as bytes for its head only: the host runs what such a
// file holds, never its compressed bytes, and every member is scanned
// (stored zip members were scanned twice). A tar is scanned whole (a tar
// can also be a valid ELF), as is a script, and every file when a
// known-bad list needs its whole hash, and a zip that is also a tar (see
// alsoTar). If the archive is then not read to its end, scanWhole scans
// all of it. a is what contents took of the file (nil for none), n its
// size; a trimmed zip is marked so, for its gaps to be scanned (see
// scanZipGaps).
func (w *walker) trimmable(it *item, a *archived, n int) bool {
	t := a != nil && (a.kind == archiveZip || a.kind == archiveStream && !weakSignature(nestedCompression(a.data))) && !a.tar && w.st.rs.knownBad == nil &&
		it.nest < w.s.limits.MaxArchiveDepth && n > archiveHead
	if t {
		a.trimmed = true
	}
	return t
}

// scanWhole scans data, a copy of the archive it, as bytes, when it was
// not unpacked to its end (see trimmable).
func (w *walker) scanWhole(it item, data []byte) error {
	it.opaque = true
	w.rescanned += int64(len(data))
	if w.scanned() > w.s.limits.MaxLayerBytes {
		return limitError("archive %s scanned again takes the bytes scanned past MaxLayerBytes %d", it.shown(), w.s.limits.MaxLayerBytes)
	}
	_, err := w.scanFile(it, bytes.NewReader(data), int64(len(data)))
	return err
}

// archiveFinding records a finding of CategoryArchive about it; unread
// counts those that say an archive was not read whole.
func (w *walker) archiveFinding(it item, rule, severity, reason string) {
	w.unread++
	w.st.add(Finding{
		Rule:        rule,
		Category:    CategoryArchive,
		Severity:    severity,
		Description: reason,
		Path:        it.shown(),
		File:        cmp.Or(it.file(), it.path),
	})
}
