package scanner

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf16"
)

// ISO 9660 images are walked as bsdtar extracts them (outside attack
// round 22, F9 and F10): each file, its extents joined (a file of
// several extents, ISO 9660 level 3, is whole only once they are), is
// scanned as a member, so what it holds is looked into at its start. The
// image is scanned whole as bytes as before. Files are found from the
// primary volume descriptor's root directory; a name is the Rock Ridge
// name (NM) when the record has one, the ISO name without its version
// otherwise. An image of zisofs files is refused (see foreignArchive).

// isISO9660 says whether head, the start of a file, is an ISO 9660
// image: a volume descriptor at sector 16.
func isISO9660(head []byte) bool {
	return len(head) >= isoMagicAt+len(isoMagic) && bytes.Equal(head[isoMagicAt:isoMagicAt+len(isoMagic)], isoMagic)
}

const (
	isoMaxDepth   = 64      // directory levels followed (libarchive stops at 1,000)
	isoMaxRecords = 1 << 20 // directory records read in one image
)

var errISO = errors.New("iso9660")

// isoRecord is a directory record's fields that the walk uses.
type isoRecord struct {
	extent, size int64
	dir, more    bool // a directory; the file goes on in the next record
	name         string
}

// parseISORecord reads the directory record r starts with (ECMA-119 9.1),
// whose identifier is in UCS-2 in a Joliet tree.
func parseISORecord(r []byte, joliet bool) (isoRecord, bool) {
	if len(r) < 34 || int(r[0]) > len(r) || r[0] < 34 || 33+int(r[32]) > int(r[0]) {
		return isoRecord{}, false
	}
	rec := isoRecord{
		extent: int64(binary.LittleEndian.Uint32(r[2:6])) * isoSector,
		size:   int64(binary.LittleEndian.Uint32(r[10:14])),
		dir:    r[25]&0x02 != 0,
		more:   r[25]&0x80 != 0,
	}
	id := r[33 : 33+int(r[32])]
	rec.name = string(id)
	if joliet && len(id) > 1 {
		u := make([]uint16, len(id)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(id[2*i:])
		}
		rec.name = string(utf16.Decode(u))
	}
	if !rec.dir {
		if i := strings.LastIndexByte(rec.name, ';'); i >= 0 {
			rec.name = rec.name[:i]
		}
		rec.name = strings.TrimSuffix(rec.name, ".")
	}
	// Rock Ridge's name, in the system use area after the identifier
	// (padded to an even length).
	from := 33 + len(id) + (1 - len(id)%2)
	if from > int(r[0]) {
		return rec, true
	}
	var nm []byte
	for su := r[from:r[0]]; len(su) >= 4 && int(su[2]) >= 4 && int(su[2]) <= len(su); su = su[su[2]:] {
		if su[0] == 'N' && su[1] == 'M' && su[2] >= 5 && su[4]&0x06 == 0 {
			nm = append(nm, su[5:su[2]]...) // a name continued (flag 1) over several
		}
	}
	if len(nm) > 0 {
		rec.name = string(nm)
	}
	return rec, true
}

// walkISO walks the ISO 9660 image ra of size bytes, the file it: the
// tree of each primary and Joliet volume descriptor, as bsdtar takes
// either (a Joliet tree may list files the primary does not, outside
// attack round 22b, F1). A file both list is scanned once.
func (w *walker) walkISO(it item, ra io.ReaderAt, size int64) error {
	iw := &isoWalk{w: w, it: it, ra: ra, size: size, seen: map[int64]bool{}, files: map[[2]int64]bool{}}
	vd := make([]byte, isoSector)
	walked := false
	var first error
	for n := int64(16); n < 16+isoMaxDescriptors; n++ {
		if _, err := ra.ReadAt(vd, n*isoSector); err != nil {
			return corruptError("iso9660 volume descriptor", noEOF(err))
		}
		if !bytes.Equal(vd[1:6], isoMagic) || vd[0] == 255 { // the set's terminator
			break
		}
		joliet := vd[0] == 2 && vd[88] == '%' && vd[89] == '/' && (vd[90] == '@' || vd[90] == 'C' || vd[90] == 'E')
		if vd[0] != 1 && !joliet {
			continue
		}
		if binary.LittleEndian.Uint16(vd[128:130]) != isoSector {
			return unsupportedError("ISO 9660 image of blocks other than 2 KiB, which bsdtar may unpack")
		}
		root, ok := parseISORecord(vd[156:190], joliet)
		if !ok || !root.dir {
			first = cmp.Or(first, corruptError("iso9660 root directory", errISO))
			continue
		}
		walked = true
		iw.joliet = joliet
		if err := iw.dir(root, "", 0); err != nil {
			if iw.w.hardError(err) {
				return err
			}
			first = cmp.Or(first, err)
		}
	}
	if !walked {
		return cmp.Or(first, unsupportedError("ISO 9660 image with no primary or Joliet volume descriptor, which bsdtar may unpack"))
	}
	return first
}

// isoMaxDescriptors is how many volume descriptors are read before the
// set's terminator.
const isoMaxDescriptors = 32

type isoWalk struct {
	w       *walker
	it      item
	ra      io.ReaderAt
	size    int64
	joliet  bool              // the tree walked names files in UCS-2
	seen    map[int64]bool    // directory extents walked
	files   map[[2]int64]bool // files scanned, by first extent and size
	records int
	bytes   int64 // what the files scanned add up to
}

// dir walks the directory d, whose files are named under prefix. A
// record or a subdirectory that cannot be read is passed over, as bsdtar
// passes over a directory out of order (outside attack round 22b, F3),
// and the first such error is returned once the rest is walked.
func (iw *isoWalk) dir(d isoRecord, prefix string, depth int) error {
	if depth > isoMaxDepth {
		return unsupportedError("ISO 9660 directories nested more than %d deep", isoMaxDepth)
	}
	if iw.seen[d.extent] {
		return nil // a directory met again: a loop, or a link to one
	}
	iw.seen[d.extent] = true
	if d.extent < 17*isoSector || d.size < 0 || d.extent+d.size > iw.size || d.size > 64<<20 {
		return corruptError(fmt.Sprintf("iso9660 directory %q at %d", prefix, d.extent), errISO)
	}
	// Directories may overlap, each the whole image: what they take to
	// read counts against the layer's bytes, as what unpacking makes.
	iw.w.unarchived += d.size
	if iw.w.scanned() > iw.w.s.limits.MaxLayerBytes {
		return limitError("ISO 9660 image %s has more directory bytes than what is left of MaxLayerBytes %d", iw.it.shown(), iw.w.s.limits.MaxLayerBytes)
	}
	buf := make([]byte, d.size)
	if _, err := iw.ra.ReadAt(buf, d.extent); err != nil {
		return corruptError("iso9660 directory", noEOF(err))
	}
	var first error
	pass := func(err error) error { // nil to go on, or the error that stops the walk
		if iw.w.hardError(err) {
			return err
		}
		first = cmp.Or(first, err)
		return nil
	}
	var pending []isoRecord // the extents of a file not yet ended
	for off := 0; off < len(buf); {
		if buf[off] == 0 { // records do not cross a sector: the rest is padding
			off = (off/isoSector + 1) * isoSector
			continue
		}
		rec, ok := parseISORecord(buf[off:min(len(buf), (off/isoSector+1)*isoSector)], iw.joliet)
		if !ok {
			if err := pass(corruptError(fmt.Sprintf("iso9660 record at %d", d.extent+int64(off)), errISO)); err != nil {
				return err
			}
			off = (off/isoSector + 1) * isoSector
			continue
		}
		off += int(buf[off])
		if iw.records++; iw.records > isoMaxRecords {
			return limitError("ISO 9660 image with more than %d directory records", isoMaxRecords)
		}
		if rec.name == "\x00" || rec.name == "\x01" { // itself, its parent
			continue
		}
		if rec.dir {
			if err := pass(iw.dir(rec, path.Join(prefix, rec.name), depth+1)); err != nil {
				return err
			}
			continue
		}
		if pending = append(pending, rec); rec.more {
			continue
		}
		// Named by its first record, as bsdtar names it.
		if err := pass(iw.file(path.Join(prefix, pending[0].name), pending)); err != nil {
			return err
		}
		pending = pending[:0]
	}
	if len(pending) > 0 {
		if err := pass(iw.file(path.Join(prefix, pending[0].name), pending)); err != nil {
			return err
		}
	}
	return first
}

// file scans the file whose extents are exts, joined as bsdtar joins
// them.
func (iw *isoWalk) file(name string, exts []isoRecord) error {
	var total int64
	readers := make([]io.Reader, 0, len(exts))
	for _, e := range exts {
		if e.extent < 0 || e.size < 0 || e.extent+e.size > iw.size {
			return corruptError(fmt.Sprintf("iso9660 file %q: an extent past the image's end", name), errISO)
		}
		total += e.size
		readers = append(readers, io.NewSectionReader(iw.ra, e.extent, e.size))
	}
	key := [2]int64{exts[0].extent, total}
	if iw.files[key] {
		return nil // listed by another tree, or twice
	}
	iw.files[key] = true
	// A file may be the whole image, and so hold the image's files
	// again, nested: what they add up to is bounded by the image
	// (outside attack round 22b, R1). Files an authoring tool writes
	// share no extents.
	if iw.bytes += total; iw.bytes > 2*iw.size+1<<20 {
		return limitError("ISO 9660 image %s whose files add up to more than twice the image", iw.it.shown())
	}
	child := iw.it.member(memberName(name), false)
	size, err := iw.w.countMember(child.where, total)
	if err != nil {
		return err
	}
	_, err = iw.w.scanFile(child, io.MultiReader(readers...), size)
	return err
}
