package upx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"io"
)

// headProbe is how much of a file Unpack reads to decide whether it has
// UPX's layout: the packed ELF header and its few program headers, l_info,
// p_info and the first b_info.
const headProbe = 1024

// Unpack decides whether the ELF file r (of size bytes) has UPX's layout
// and, if so, restores it in process, as "upx -d" would. The packed blocks
// are found from UPX's structures (l_info after the program headers,
// p_info, then a b_info before each block), never from the "UPX!" marks,
// so a file whose marks were rewritten unpacks all the same.
//
// A file without that layout returns ErrNotPacked after reading at most
// headProbe bytes. A file with it that cannot be restored returns an error
// wrapping ErrCorrupt (or ErrTooLarge, when its declared size is over
// lim.MaxOutput) that says why. When the failure lies past the PT_LOADs
// (in the ranges the loader never reads, the end marker or the trailer's
// checksums), the Unpacked returned with the error holds the PT_LOADs
// restored, the rest of File zero: it is what the host would run, and the
// caller should scan it as well as report the error.
func Unpack(r io.ReaderAt, size int64, lim Limits) (*Unpacked, error) {
	lay, err := probe(r, size)
	if err != nil {
		return nil, err
	}
	if lay.filesize > lim.MaxOutput {
		return nil, fmt.Errorf("%w: the packed file declares %d bytes, the limit is %d", ErrTooLarge, lay.filesize, lim.MaxOutput)
	}
	u := &unpacker{
		order: lay.packed.order,
		r:     r, size: size, pos: int64(lay.lpos + lInfoSize + pInfoSize),
		blocksize: uint32(min(lay.blocksize, lay.filesize)),
		uAdler:    adler32.New(), cAdler: adler32.New(),
	}
	u.buf = make([]byte, u.blocksize)
	out := make([]byte, lay.filesize)
	phs, segs, written, err := u.loads(out, lay)
	if err != nil {
		return nil, err
	}

	// What the loader maps is restored. What follows is not read by the
	// loader (so a packer may damage it and the program still runs): a
	// failure from here on is reported with the PT_LOADs restored, so the
	// caller can still scan what the host runs.
	res := &Unpacked{File: out, Segments: segs, Arch: lay.arch, Method: u.first, Version: lay.version}
	if res.Method == methodStored {
		res.Method = lay.first.method
	}
	res.MarksAltered = lay.lmagic != magicLE
	if err := u.gaps(out, phs, lay, written); err != nil {
		return res, err
	}
	return res, u.trailerChecks(res, lay)
}

// layout is what probe read of a packed file's UPX structures.
type layout struct {
	packed    elfShape
	arch      string
	lpos      int    // offset of l_info
	lmagic    uint32 // l_info's mark, "UPX!" unless altered
	lsize     int64  // l_info's loader size
	version   byte
	filesize  int64 // p_info: the unpacked file's size
	blocksize int64
	first     bInfo // the first block's b_info
}

// probe reads the head of r and returns its UPX layout, or ErrNotPacked.
func probe(r io.ReaderAt, size int64) (layout, error) {
	if size < 0 {
		return layout{}, fmt.Errorf("unpack a file of %d bytes: the size is negative", size)
	}
	head := make([]byte, min(size, headProbe))
	if n, err := r.ReadAt(head, 0); n < len(head) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return layout{}, fmt.Errorf("read the first %d bytes: %w", len(head), err)
	}
	packed, ok := parseELF(head)
	arch := packed.arch()
	if !ok || arch == "" || packed.phoff != uint64(packed.ehsize) || packed.phnum == 0 || packed.phnum > 8 {
		return layout{}, ErrNotPacked
	}
	// UPX's structures are in the target's byte order, but its marks
	// are the bytes "UPX!" whatever it: they are read little-endian.
	le, te := binary.LittleEndian, packed.order
	lpos := int(packed.ehsize) + int(packed.phnum)*int(packed.phentsize)
	if lpos+lInfoSize+pInfoSize+bInfoSize > len(head) {
		return layout{}, ErrNotPacked
	}
	l := head[lpos:]
	lay := layout{
		packed: packed, arch: arch, lpos: lpos,
		lmagic: le.Uint32(l[4:]), lsize: int64(te.Uint16(l[8:])), version: l[10],
		filesize: int64(te.Uint32(l[lInfoSize+4:])), blocksize: int64(te.Uint32(l[lInfoSize+8:])),
		first: parseBInfo(l[lInfoSize+pInfoSize:], te),
	}
	orig := struct{ ehsize, phentsize uint32 }{52, 32}
	if packed.is64 {
		orig.ehsize, orig.phentsize = 64, 56
	}
	// The first block holds the original ELF header and program headers,
	// so its size has their shape; that, with sane p_info sizes, is what
	// tells UPX's layout from any other ELF.
	first := lay.first
	if first.unc > orig.ehsize && (first.unc-orig.ehsize)%orig.phentsize == 0 &&
		(first.unc-orig.ehsize)/orig.phentsize <= 64 && first.cpr > 0 && first.cpr <= first.unc &&
		lay.blocksize > 0 && lay.filesize >= int64(first.unc) {
		return lay, nil
	}
	if lay.lmagic == magicLE {
		return layout{}, fmt.Errorf("%w: l_info carries UPX's mark but the blocks after it do not have UPX's layout", ErrCorrupt)
	}
	return layout{}, ErrNotPacked
}

// loads restores the original ELF header and program headers, then every
// PT_LOAD: what the loader maps. It returns the program headers, the
// PT_LOADs as segments and how many bytes are restored.
func (u *unpacker) loads(out []byte, lay layout) ([]phdr, []Segment, int64, error) {
	n, err := u.block(out)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("restore the ELF header: %w", err)
	}
	hdrLen := int64(n)
	e, ok := parseELF(out[:n])
	if !ok || e.is64 != lay.packed.is64 || e.machine != lay.packed.machine || e.phoff != uint64(e.ehsize) ||
		int64(e.ehsize)+int64(e.phnum)*int64(e.phentsize) != hdrLen {
		return nil, nil, 0, fmt.Errorf("%w: the restored ELF header does not describe a %s program with its program headers after it", ErrCorrupt, lay.arch)
	}
	phs := e.phdrs(out[:n])
	filesize := lay.filesize
	written := hdrLen
	var segs []Segment
	for _, p := range phs {
		if p.typ != ptLoad {
			continue
		}
		if p.offset > uint64(filesize) || p.filesz > uint64(filesize)-p.offset {
			return nil, nil, 0, fmt.Errorf("%w: PT_LOAD at offset %d of %d bytes runs past the %d-byte file", ErrCorrupt, p.offset, p.filesz, filesize)
		}
		from, to := int64(p.offset), int64(p.offset+p.filesz)
		if len(segs) == 0 {
			// UPX packs the first PT_LOAD after the headers it has
			// already restored.
			if from != 0 || to < hdrLen {
				return nil, nil, 0, fmt.Errorf("%w: the first PT_LOAD does not cover the ELF header", ErrCorrupt)
			}
			from = hdrLen
		}
		segs = append(segs, Segment{Offset: int64(p.offset), Size: int64(p.filesz), Exec: p.flags&pfX != 0})
		if written, err = u.extent(out, from, to, written); err != nil {
			return nil, nil, 0, fmt.Errorf("restore the PT_LOAD at offset %d: %w", p.offset, err)
		}
	}
	if len(segs) == 0 {
		return nil, nil, 0, fmt.Errorf("%w: the restored program has no PT_LOAD", ErrCorrupt)
	}
	return phs, segs, written, nil
}

// gaps restores what lies between and after the PT_LOADs. The loader
// follows the PT_LOAD blocks (l_info.l_lsize counts it with the words
// before it), then come the blocks of those ranges: section headers,
// symbols, debug data.
func (u *unpacker) gaps(out []byte, phs []phdr, lay layout, written int64) error {
	filesize := lay.filesize
	loadEnd := (u.pos + 3) &^ 3
	var gaps []int
	for i := range phs {
		if loadGap(phs, i, uint64(filesize)) > 0 {
			gaps = append(gaps, i)
		}
	}
	if len(gaps) > 0 {
		u.pos = u.gapStart(loadEnd, lay.lsize, uint32(min(loadGap(phs, gaps[0], uint64(filesize)), uint64(u.blocksize))))
	} else {
		u.pos = loadEnd + lay.lsize
	}
	for _, i := range gaps {
		p := phs[i]
		gap := loadGap(phs, i, uint64(filesize))
		from := int64(p.offset + p.filesz)
		var err error
		if written, err = u.extent(out, from, from+int64(gap), written); err != nil {
			return fmt.Errorf("restore the %d bytes after the PT_LOAD at offset %d: %w", gap, p.offset, err)
		}
	}
	if written != filesize {
		return fmt.Errorf("%w: the blocks restore %d bytes, p_info declares %d", ErrCorrupt, written, filesize)
	}
	return nil
}

// trailerChecks reads the end marker after the last block and the
// trailer's checksums, noting in res whether UPX's marks were altered and
// whether the checksums were verified.
func (u *unpacker) trailerChecks(res *Unpacked, lay layout) error {
	le := binary.LittleEndian
	// The end marker: a b_info of no bytes whose second word is "UPX!".
	var end [bInfoSize]byte
	if err := u.readAt(end[:], u.pos); err != nil {
		return fmt.Errorf("read the end marker: %w", err)
	}
	if u.order.Uint32(end[:]) != 0 {
		return fmt.Errorf("%w: a block follows the restored file at offset %d", ErrCorrupt, u.pos)
	}
	res.MarksAltered = res.MarksAltered || le.Uint32(end[4:]) != magicLE

	ph, found, err := trailer(u.r, u.size, int64(lay.lpos+lInfoSize), lay.filesize, u.order)
	if err != nil {
		return err
	}
	if found {
		res.MarksAltered = res.MarksAltered || ph.magic != magicLE
		if ph.uAdler != u.uAdler.Sum32() || ph.cAdler != u.cAdler.Sum32() {
			return fmt.Errorf("%w: checksums of the blocks (%08x, %08x) differ from the trailer's (%08x, %08x)", ErrCorrupt, u.uAdler.Sum32(), u.cAdler.Sum32(), ph.uAdler, ph.cAdler)
		}
		res.Checksummed = true
	}
	return nil
}

// gapStart finds the first b_info after the loader: where l_info's loader
// size puts it, or else, as the loader never reads l_lsize, the first
// 4-aligned b_info within 64 KiB after the PT_LOAD blocks that declares
// want bytes (the first range's size, or a full block).
func (u *unpacker) gapStart(loadEnd, lsize int64, want uint32) int64 {
	ok := func(pos int64) bool {
		var h [bInfoSize]byte
		if u.readAt(h[:], pos) != nil {
			return false
		}
		b := parseBInfo(h[:], u.order)
		return b.unc == want && b.cpr > 0 && b.cpr <= b.unc
	}
	if ok(loadEnd + lsize) {
		return loadEnd + lsize
	}
	for pos := loadEnd; pos < loadEnd+64<<10 && pos+bInfoSize <= u.size; pos += 4 {
		if ok(pos) {
			return pos
		}
	}
	return loadEnd + lsize // and the block there is refused with its reason
}

// extent restores out[from:to] from the blocks at u.pos, which must end
// exactly at to.
func (u *unpacker) extent(out []byte, from, to, written int64) (int64, error) {
	for from < to {
		n, err := u.block(out[from:to])
		if err != nil {
			return written, err
		}
		from += int64(n)
		written += int64(n)
	}
	return written, nil
}

// loadGap is the size of the file range after PT_LOAD i up to the next
// PT_LOAD in the file, or to the end of the file: the ranges UPX packs
// after the loader.
func loadGap(phs []phdr, i int, filesize uint64) uint64 {
	if phs[i].typ != ptLoad {
		return 0
	}
	hi := phs[i].offset + phs[i].filesz
	lo := filesize
	for j, p := range phs {
		if j != i && p.typ == ptLoad && p.offset >= hi && p.offset < lo {
			lo = p.offset
		}
	}
	if lo < hi {
		return 0
	}
	return lo - hi
}

// packHeader is the part of UPX's PackHeader that Unpack checks.
type packHeader struct {
	magic          uint32
	uAdler, cAdler uint32
}

// trailer finds UPX's PackHeader at the end of the file by position, not
// by its mark: the last 36 bytes before any zero padding are the 32-byte
// PackHeader and the offset of p_info. It reports found only when that
// offset and the declared file size match what l_info and p_info said.
func trailer(r io.ReaderAt, size, pinfo, filesize int64, te binary.ByteOrder) (packHeader, bool, error) {
	var ph packHeader
	const tail = 8192
	buf := make([]byte, min(size, tail))
	if n, err := r.ReadAt(buf, size-int64(len(buf))); n < len(buf) {
		return ph, false, fmt.Errorf("read the last %d bytes: %w", len(buf), err)
	}
	// The offset ends in zero bytes of its own, so the trailer may end up
	// to 3 bytes after the last non-zero byte.
	last := len(bytes.TrimRight(buf, "\x00"))
	le := binary.LittleEndian
	var t []byte
	for end := last; end <= min(last+3, len(buf)); end++ {
		if end < 36 {
			continue
		}
		c := buf[end-36 : end]
		if int64(te.Uint32(c[32:])) == pinfo && int64(te.Uint32(c[24:])) == filesize {
			t = c
			break
		}
	}
	if t == nil {
		return ph, false, nil
	}
	ph.magic = le.Uint32(t)
	// UPX's PackHeader puts the checksums after the lengths in the
	// big-endian formats, before them in the little-endian ones.
	at := 8
	if te == binary.ByteOrder(binary.BigEndian) {
		at = 16
	}
	ph.uAdler, ph.cAdler = te.Uint32(t[at:]), te.Uint32(t[at+4:])
	return ph, true, nil
}
