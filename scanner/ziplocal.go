package scanner

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"io/fs"
	"strings"
)

// A zip is read twice over, as the two kinds of extractor read it. unzip,
// Python and Java's ZipFile read the central directory at the end (the
// directory walk); jar x from standard input, Java's ZipInputStream and
// bsdtar reading a stream read the local headers from the first byte, one
// entry after the other, a deflated entry to the end of its deflate
// stream (the local walk). What neither walk covers is scanned as bytes
// (scanZipGaps), so nothing an attacker hides between entries goes
// unscanned.

// zipWalk is what both walks of one zip share.
type zipWalk struct {
	it   item
	ra   io.ReaderAt
	size int64
	// scanned holds the members the directory walk scanned whole, by the
	// offset of their data: an entry of the local walk with the same data
	// offset and method (and size, stored) holds the same bytes, and is
	// not scanned again.
	scanned map[int64]zipScanned
	// failed: data offsets of members reported unreadable, not again.
	failed map[int64]bool
	// behind: a zip entry found behind a file's start by its local header
	// (see appendZipEntries): an entry that cannot be read ends the walk
	// with no finding, as programs carry the magic number before other
	// bytes; an entry after it that can is found by its own header.
	behind bool
	// spans are the bytes a header, member data, a data descriptor, the
	// directory or the end record covers.
	spans []zipSpan
	buf   []byte // a local header's name and extra field
	ddBuf []byte // storedEnd's window on the data
	// hdr reads headers and signatures for the local walk: ra itself
	// for a zip in memory, through a read-ahead buffer for a spooled
	// one, so that a jar of thousands of entries does not cost four
	// system calls for each.
	hdr io.ReaderAt
}

func newZipWalk(it item, ra io.ReaderAt, size int64) *zipWalk {
	zw := &zipWalk{it: it, ra: ra, size: size, hdr: ra, scanned: map[int64]zipScanned{}, failed: map[int64]bool{}}
	if _, ok := ra.(*bytes.Reader); !ok {
		zw.hdr = &headerReader{r: ra, size: size, buf: make([]byte, 32<<10)}
	}
	return zw
}

type zipScanned struct {
	method uint16
	size   int64 // compressed size of a stored member
	end    int64 // where its data really ends
}

// walkZipDirectory scans every member the central directory names, but
// directories and symbolic links, with the exec bit of its Unix mode (see
// openMember), and records where each one's data really ends. A member
// that cannot be opened or read to its end is reported as
// ArchiveUnreadable and the others are still scanned.
func (w *walker) walkZipDirectory(zw *zipWalk, zr *zip.Reader) error {
	for _, f := range zr.File {
		if err := w.st.ctx.Err(); err != nil {
			return err
		}
		mode := f.Mode()
		if mode.IsDir() || mode&fs.ModeSymlink != 0 {
			continue
		}
		child := zw.it.member(memberName(f.Name), mode&0o111 != 0)
		if err := w.countFile(child.where, 0); err != nil {
			return err
		}
		dataOff, err := f.DataOffset()
		var m *zipMemberReader
		if err == nil {
			m, err = openMember(f, zw.ra, dataOff, zw.size, w.chargeDecoder)
		}
		if err != nil {
			if dataOff > 0 { // a real offset (see failed)
				zw.failed[dataOff] = true
			}
			severity, reason := unopened(f.Method, err)
			w.archiveFinding(child, ArchiveUnreadableRule, severity, reason)
			continue
		}
		err = w.scanMember(child, &unarchiveReader{r: m, w: w, what: "zip member " + child.where})
		m.Close()
		switch {
		case err == nil:
			if end, ok := m.end(); ok {
				zw.scanned[dataOff] = zipScanned{method: zipMethodOf(f.Method), size: int64(f.CompressedSize64), end: end}
				zw.cover(dataOff, end)
			}
		case w.hardError(err):
			return err
		default:
			// Each member is read on its own from the directory, so one
			// that is shorter than it says does not hide the others.
			zw.failed[dataOff] = true
			w.archiveFinding(child, ArchiveUnreadableRule, unreadableSeverity(err), "zip member could not be read to its end: "+err.Error())
		}
	}
	return nil
}

// zipLocal is one local header as the local walk reads it.
type zipLocal struct {
	flags, method uint16
	csize         int64
	name          []byte // in the walk's buffer: valid until the next header is read
	dataOff       int64
	zip64         bool // its extra field has a zip64 record: its data descriptor holds 8-byte sizes
}

// Flags of a local header.
const (
	zipEncrypted  = 1
	zipDescriptor = 8
)

// localHeader reads the local header at off; ok is false when there is
// none (the walk ends).
func (zw *zipWalk) localHeader(off int64) (zipLocal, bool) {
	var h [30]byte
	if off < 0 || off+30 > zw.size {
		return zipLocal{}, false
	}
	if _, err := zw.hdr.ReadAt(h[:], off); err != nil || !bytes.Equal(h[:4], zipMagic) {
		return zipLocal{}, false
	}
	le := binary.LittleEndian
	nameLen, extraLen := int64(le.Uint16(h[26:])), int64(le.Uint16(h[28:]))
	e := zipLocal{flags: le.Uint16(h[6:]), method: zipMethodOf(le.Uint16(h[8:])), csize: int64(le.Uint32(h[18:])), dataOff: off + 30 + nameLen + extraLen}
	if e.dataOff > zw.size {
		return zipLocal{}, false
	}
	if int64(cap(zw.buf)) < nameLen+extraLen {
		zw.buf = make([]byte, nameLen+extraLen)
	}
	ne := zw.buf[:nameLen+extraLen]
	if _, err := zw.hdr.ReadAt(ne, off+30); err != nil {
		return zipLocal{}, false
	}
	e.name = ne[:nameLen]
	usize32 := le.Uint32(h[22:])
	for x := ne[nameLen:]; len(x) >= 4; {
		id, n := le.Uint16(x), int(le.Uint16(x[2:]))
		if n > len(x)-4 {
			break
		}
		if id == 1 {
			// The zip64 record holds the sizes the header marks 0xFFFFFFFF,
			// the uncompressed size first.
			e.zip64 = true
			v := x[4 : 4+n]
			if usize32 == 0xFFFFFFFF && len(v) >= 8 {
				v = v[8:]
			}
			if e.csize == 0xFFFFFFFF && len(v) >= 8 {
				e.csize = int64(min(le.Uint64(v), uint64(zw.size)))
			}
		}
		x = x[4+n:]
	}
	return e, true
}

// walkZipLocal reads the zip's entries from its local headers, as a
// streaming extractor does, from offset 0 when the zip starts with one:
// each entry's header, its data (stored: the header's compressed size;
// deflated: to the end of its deflate stream), then its data descriptor
// when it has one; then the next local header, skipping bytes that are
// none as bsdtar does, unless the central directory or an end record
// comes first: the walk ends there. An entry the directory walk scanned
// with the same content is skipped; any other is scanned as a member
// named by its local header (see localEntry). Offsets only grow, so the
// walk ends within the file, and every entry scanned counts against the
// limits as a member does.
func (w *walker) walkZipLocal(zw *zipWalk) error {
	for off := int64(0); ; {
		if err := w.st.ctx.Err(); err != nil {
			return err
		}
		if off > 0 {
			var ok bool
			if off, ok = zw.nextHeader(off); !ok {
				return nil
			}
		}
		e, ok := zw.localHeader(off)
		if !ok {
			return nil
		}
		zw.cover(off, e.dataOff)
		end, err := w.localEntry(zw, e)
		if err != nil || end < 0 {
			return err
		}
		zw.cover(e.dataOff, end)
		off = end
		if e.flags&zipDescriptor != 0 {
			var sig [4]byte
			if _, err := zw.hdr.ReadAt(sig[:], off); err == nil && binary.LittleEndian.Uint32(sig[:]) == 0x08074b50 {
				off += 4
			}
			off += 12
			if e.zip64 {
				off += 8
			}
			zw.cover(end, min(off, zw.size))
		}
	}
}

// localEntry scans the entry e of the local walk, unless the directory
// walk scanned the same bytes, and returns where its data ends, or -1
// when the walk cannot go past it: data that does not inflate to its end,
// an encrypted entry or one of another method than stored and deflated
// whose size only its data descriptor says (with a size in its header,
// such an entry is reported and passed). A stored entry whose data
// descriptor is not found runs to the end of the file, as bsdtar writes
// it out. Only limits and the scan's end are errors.
func (w *walker) localEntry(zw *zipWalk, e zipLocal) (int64, error) {
	// A stored entry with a data descriptor says its size only after its
	// data: a streaming extractor ends it at its first fitting descriptor,
	// whatever the directory says, so it is the same entry only when that
	// is where the directory's ends; otherwise the entry is scanned as the
	// extractor writes it out, and the walk goes on from there.
	storedDD := e.method == zip.Store && e.flags&(zipDescriptor|zipEncrypted) == zipDescriptor
	ddEnd, ddFound := int64(-1), false
	if storedDD {
		ddEnd, ddFound = zw.storedEnd(e.dataOff)
	}
	s, ok := zw.scanned[e.dataOff]
	if ok && s.method == e.method {
		switch {
		case storedDD:
			if ddFound && ddEnd == s.end {
				return s.end, nil
			}
		case e.method == zip.Deflate, s.size == e.csize, e.flags&zipDescriptor != 0:
			return s.end, nil
		}
	}
	name := string(e.name)
	child := zw.it.member(memberName(name), false)
	reported := zw.failed[e.dataOff]
	unreadable := func(severity, reason string) {
		if !reported && !zw.behind {
			w.archiveFinding(child, ArchiveUnreadableRule, severity, reason)
		}
	}
	src := io.NewSectionReader(zw.ra, e.dataOff, zw.size-e.dataOff)
	var m *zipMemberReader
	switch {
	case e.flags&zipEncrypted != 0 || !zipDecoded(e.method):
		unreadable(undecodedLocal(e))
		// bsdtar skips it by the size its header gives, if it gives one.
		if e.flags&zipDescriptor != 0 || zw.behind {
			return -1, nil
		}
		return e.dataOff + min(e.csize, src.Size()), nil
	case e.method == zip.Store:
		n := min(e.csize, src.Size())
		if e.flags&zipDescriptor != 0 {
			// Its size is only said after it: Java's ZipInputStream
			// refuses it, bsdtar looks for the descriptor that follows.
			// Without one, bsdtar writes out the rest of the file.
			n = src.Size()
			if ddFound {
				n = ddEnd - e.dataOff
			}
		}
		m = &zipMemberReader{ReadCloser: io.NopCloser(io.LimitReader(src, n)), stored: e.dataOff + n}
	case e.method == zip.Deflate:
		m = inflateMember(src, e.dataOff)
	default:
		m = otherMember(e, src, w.chargeDecoder)
	}
	defer m.Close()
	r := &unarchiveReader{r: m, w: w, what: "zip entry " + child.where}
	var err error
	if strings.HasSuffix(name, "/") {
		// A directory to every extractor: its data is never written out.
		_, err = io.Copy(io.Discard, r)
	} else if err = w.countFile(child.where, 0); err == nil {
		err = w.scanMember(child, r)
	}
	switch {
	case err == nil:
	case w.hardError(err):
		return -1, err
	default:
		unreadable(unreadableSeverity(err), "zip entry read from its local header could not be read to its end: "+err.Error())
		return -1, nil
	}
	end, ok := m.end()
	if !ok {
		return -1, nil
	}
	return end, nil
}

// storedEnd finds where a stored entry whose data starts at dataOff and
// whose size only its data descriptor says ends, as bsdtar reading a
// stream finds it: at the first "PK\x07\x08" followed by the CRC-32 of
// the bytes before it. The sizes that follow are not compared (bsdtar
// only warns when they differ), and a zip64 descriptor fits as well as
// the short form. It reads the file at most once from dataOff.
func (zw *zipWalk) storedEnd(dataOff int64) (int64, bool) {
	const maxChunk = 64 << 10
	le := binary.LittleEndian
	sig := []byte("PK\x07\x08")
	if len(zw.ddBuf) < maxChunk+16 {
		zw.ddBuf = make([]byte, maxChunk+16)
	}
	var crc uint32
	done := dataOff // crc covers [dataOff, done)
	// Most entries sized this way are small: the first read is too.
	chunk := 4 << 10
	for pos := dataOff; pos < zw.size; pos, chunk = pos+int64(chunk), min(2*chunk, maxChunk) {
		n, err := zw.hdr.ReadAt(zw.ddBuf[:min(int64(chunk+16), zw.size-pos)], pos)
		if err != nil && err != io.EOF {
			return 0, false
		}
		b := zw.ddBuf[:n]
		for i := 0; ; {
			k := bytes.Index(b[i:], sig)
			q := i + k
			if k < 0 || q >= chunk || q+16 > n {
				break
			}
			crc = crc32.Update(crc, crc32.IEEETable, b[done-pos:q])
			done = pos + int64(q)
			if le.Uint32(b[q+4:]) == crc {
				return done, true
			}
			i = q + 1
		}
		upTo := min(n, chunk)
		crc = crc32.Update(crc, crc32.IEEETable, b[done-pos:upTo])
		done = pos + int64(upTo)
	}
	return 0, false
}

// nextHeader finds the first local header at or after off, as bsdtar
// reading a stream skips what lies between entries; ok is false when a
// central directory entry or an end record, or the end of the file, comes
// first (after a zip's last entry, its directory is at off: nothing is
// searched).
func (zw *zipWalk) nextHeader(off int64) (int64, bool) {
	var sig [4]byte
	if _, err := zw.hdr.ReadAt(sig[:], off); err != nil {
		return 0, false
	}
	switch string(sig[:]) {
	case "PK\x03\x04":
		return off, true
	case "PK\x01\x02", "PK\x05\x06", "PK\x06\x06":
		return 0, false
	}
	const chunk = 64 << 10
	buf := make([]byte, 0, chunk+3)
	for pos := off; pos < zw.size; pos += chunk {
		buf = buf[:min(int64(cap(buf)), zw.size-pos)]
		n, err := zw.ra.ReadAt(buf, pos)
		if err != nil && err != io.EOF {
			return 0, false
		}
		b := buf[:n]
		for i := 0; i < min(n, chunk); {
			k := bytes.Index(b[i:], []byte("PK"))
			if k < 0 || i+k+4 > n {
				break
			}
			switch q := i + k; string(b[q+2 : q+4]) {
			case "\x03\x04":
				return pos + int64(q), true
			case "\x01\x02", "\x05\x06", "\x06\x06":
				return 0, false
			default:
				i = q + 1
			}
		}
	}
	return 0, false
}
