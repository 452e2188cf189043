package scanner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Archives that bsdtar (libarchive) on a host unpacks and pullgate does
// not read: what they hold was never scanned, so a file that is one is
// refused, a high ArchiveUnreadable, as lzip is (outside attack round 21,
// F4 and F5). Each is known by a magic number of six bytes or more at its
// start, but gzip's LZH method, whose two bytes start no other file.
var foreignArchives = []struct {
	magic []byte
	name  string
}{
	{[]byte("7z\xbc\xaf\x27\x1c"), "a 7-Zip archive, which 7z and bsdtar unpack"},
	{[]byte("Rar!\x1a\x07\x00"), "a RAR archive, which unrar and bsdtar unpack"},
	{[]byte("Rar!\x1a\x07\x01\x00"), "a RAR 5 archive, which unrar and bsdtar unpack"},
	{[]byte("MSCF\x00\x00\x00\x00"), "a Cabinet archive, which cabextract and bsdtar unpack"},
	{weakMagic, "a file of gzip's LZH method, which gzip -d unpacks"},
}

// weakMagic, gzip's LZH method, is two bytes: one in 65,536 payloads
// decoded at a wrong alignment (random bytes: a base64 run is decoded at
// four, a base32 run at eight) starts with it, which is not taken for an
// archive there (item.unaligned); the alignment a run's letters end
// whole in is always read for it.
var weakMagic = []byte("\x1f\xa0")

// zisofsMagic starts each file an ISO 9660 image stores compressed with
// zisofs (mkzftree, mkisofs -z): bsdtar and the kernel's isofs inflate
// it; an image of uncompressed files is scanned as the bytes it is.
var zisofsMagic = []byte("\x37\xe4\x53\x96\xc9\xdb\xd6\x07")

// isoMagicAt is where an ISO 9660 image's first volume descriptor names
// its standard identifier, isoMagic.
const isoMagicAt = 0x8001

var isoMagic = []byte("CD001")

// foreignArchive names the archive head starts, among those pullgate does
// not read, or says "". An ISO 9660 image is one only when head, what is
// held of it (a window of a larger image), holds a zisofs file. A program
// (ELF or PE) is one when it is a self-extractor bsdtar unpacks (see
// selfExtractor).
func foreignArchive(head []byte) string {
	for _, f := range foreignArchives {
		if bytes.HasPrefix(head, f.magic) {
			return f.name
		}
	}
	switch {
	case len(head) > isoMagicAt+len(isoMagic) && bytes.Equal(head[isoMagicAt:isoMagicAt+len(isoMagic)], isoMagic) &&
		holdsZisofsFile(head):
		return "an ISO 9660 image of zisofs-compressed files, which bsdtar unpacks"
	case lhaHeader(head) == 0:
		return lhaName
	}
	return selfExtractor(head)
}

const lhaName = "an LHA archive, which lha and bsdtar unpack"

// lhaHeader is libarchive's check of an LHA header at h (its
// lha_check_header_format, H_SIZE 22 bytes): 0 when h starts one (a
// method "-lh?-" of a level bsdtar reads, or LArc's "-lz?-"), otherwise
// how far on the next may start. A level 0 or 1 header's checksum is
// checked as libarchive checks it when it reads the header.
func lhaHeader(h []byte) int {
	const size, method, attr, level = 22, 2, 19, 20
	if len(h) < size {
		return len(h) + 1
	}
	switch h[method+3] {
	case '0', '1', '2', '3', '4', '5', '6', '7', 'd', 's':
	case 'h', 'z':
		return 1
	case 'l':
		return 2
	case '-':
		return 3
	default:
		return 4
	}
	if h[0] == 0 || h[method] != '-' || h[method+1] != 'l' || h[method+4] != '-' {
		return 4
	}
	ok := false
	switch h[method+2] {
	case 'h':
		ok = h[method+3] != 's' && (h[level] == 0 || h[level] <= 3 && h[attr] == 0x20)
	case 'z':
		ok = h[level] == 0 && (h[method+3] == 's' || h[method+3] == '4' || h[method+3] == '5')
	}
	if !ok {
		return 4
	}
	if h[level] <= 1 { // the checksum of the header's bytes after its first two
		n := int(h[0]) + 2
		if n > len(h) {
			return 4
		}
		var sum byte
		for _, b := range h[2:n] {
			sum += b
		}
		if sum != h[1] {
			return 4
		}
	}
	return 0
}

// Where libarchive's bidders look for an archive behind a program's
// start, a self-extractor's stub (archive_read_support_format_*.c):
// 7-Zip in an ELF or PE file from 0x27000 to 0x60000, RAR in one from
// 64 KiB every 16 bytes, Cabinet in a PE file and LHA in one from its
// start. Each bidder stops starting reads at a bound (128 KiB for RAR and
// Cabinet, 20 KiB for LHA) but looks through all the bytes its last read
// brought in, which went up to 0x40000 for a Cabinet and 0xc000 for LHA
// when bsdtar read a file (outside attack round 22b, F4 and F6): those
// three are looked for up to 512 KiB, 512 KiB and 64 KiB. A 7-Zip start
// header's CRC, a RAR step and a Cabinet's version keep what a program
// merely holds from being taken for one.
const (
	sfx7zFrom, sfx7zTo   = 0x27000, 0x60000
	sfxRarFrom, sfxRarTo = 64 << 10, 512 << 10
	sfxCabTo             = 512 << 10
	sfxLhaTo             = 64 << 10
)

// rarMark is what both RAR magics start with.
var rarMark = []byte("Rar!\x1a\x07")

// selfExtractor names the archive a program (ELF or PE) carries where
// bsdtar finds it and unpacks it, among those pullgate does not read, or
// says "". Each is checked as its reader checks it before it reads on, so
// a program that only holds the magic (libarchive itself does) is none.
func selfExtractor(head []byte) string {
	pe := bytes.HasPrefix(head, []byte("MZ"))
	if !pe && !bytes.HasPrefix(head, elfMagic) {
		return ""
	}
	for p := sfx7zFrom; p < min(len(head), sfx7zTo); {
		i := bytes.Index(head[p:min(len(head), sfx7zTo)], foreignArchives[0].magic)
		if i < 0 {
			break
		}
		p += i
		if h := head[p:]; len(h) >= 32 && crc32.ChecksumIEEE(h[12:32]) == binary.LittleEndian.Uint32(h[8:12]) {
			return "a 7-Zip self-extractor, which 7z and bsdtar unpack"
		}
		p++
	}
	for p := sfxRarFrom; p < min(len(head), sfxRarTo); {
		i := bytes.Index(head[p:min(len(head), sfxRarTo+8)], rarMark)
		if i < 0 {
			break
		}
		p += i
		if h := head[p:]; (p-sfxRarFrom)%16 == 0 && (bytes.HasPrefix(h, foreignArchives[1].magic) || bytes.HasPrefix(h, foreignArchives[2].magic)) {
			return "a RAR self-extractor, which unrar and bsdtar unpack"
		}
		p++
	}
	if !pe {
		return ""
	}
	for p := 0; p < min(len(head), sfxCabTo); {
		i := bytes.Index(head[p:min(len(head), sfxCabTo)], foreignArchives[3].magic)
		if i < 0 {
			break
		}
		p += i
		if h := head[p:]; len(h) > 25 && h[25] == 1 && h[24] == 3 {
			return "a Cabinet self-extractor, which cabextract and bsdtar unpack"
		}
		p++
	}
	for p := 0; p < min(len(head), sfxLhaTo); {
		next := lhaHeader(head[p:])
		if next == 0 {
			return "an LHA self-extractor, which lha and bsdtar unpack"
		}
		p += next
	}
	return ""
}

// isoSector is the size of an ISO 9660 image's sectors, where its files'
// extents start.
const isoSector = 2048

// holdsZisofsFile says whether an ISO image, what is held of it, holds a
// zisofs file: its header at the start of a sector (where a file's extent
// starts), with the header size (4, in words) and block size (2^15 to
// 2^17) zisofs writes. A file that only holds the magic, as libarchive
// does, is none (outside attack round 22, FB1).
func holdsZisofsFile(iso []byte) bool {
	for off := 0; ; off++ {
		i := bytes.Index(iso[off:], zisofsMagic)
		if i < 0 {
			return false
		}
		off += i
		if h := iso[off:]; off%isoSector == 0 && len(h) >= 16 && h[12] == 4 && h[13] >= 15 && h[13] <= 17 {
			return true
		}
	}
}

// foreignError refuses the archive data starts (see foreignArchive).
func foreignError(head []byte) error {
	return fmt.Errorf("%w: %s", errUnsupported, foreignArchive(head))
}
