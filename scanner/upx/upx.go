package upx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrNotPacked is returned, fast, for any input that does not have UPX's
// layout: not an ELF, another architecture, or no l_info, p_info and
// b_info where UPX puts them.
var ErrNotPacked = errors.New("upx: not packed")

// ErrCorrupt is wrapped by every error about a file that has UPX's layout
// but cannot be unpacked: truncated, tampered, an unknown method or filter,
// a checksum that does not match.
var ErrCorrupt = errors.New("upx: cannot unpack")

// ErrTooLarge is wrapped when the sizes a packed file declares exceed the
// limit given to Unpack. Nothing of that size is allocated.
var ErrTooLarge = errors.New("upx: unpacked size over the limit")

// Limits bound what Unpack may allocate.
type Limits struct {
	// MaxOutput caps the restored file's size, in bytes, as declared by
	// the packed headers and checked before anything is allocated.
	MaxOutput int64
}

// Method is UPX's compression method number, as in b_info.b_method.
type Method uint8

// The methods UPX uses for Linux ELF. The NRV methods are the _LE32
// variants (a 32-bit little-endian bit buffer) everywhere but 32-bit ARM,
// which has the _8 ones; the 16-bit ones are refused as unknown here.
const (
	MethodNRV2B  Method = 2
	MethodNRV2D  Method = 5
	MethodNRV2E  Method = 8
	MethodLZMA   Method = 14
	methodStored Method = 0 // a block that did not compress

	// The _8 variants (an 8-bit bit buffer), which UPX uses for 32-bit
	// ARM.
	MethodNRV2B8 Method = 3
	MethodNRV2D8 Method = 6
	MethodNRV2E8 Method = 9
)

func (m Method) String() string {
	switch m {
	case MethodNRV2B:
		return "NRV2B"
	case MethodNRV2D:
		return "NRV2D"
	case MethodNRV2E:
		return "NRV2E"
	case MethodLZMA:
		return "LZMA"
	case MethodNRV2B8:
		return "NRV2B_8"
	case MethodNRV2D8:
		return "NRV2D_8"
	case MethodNRV2E8:
		return "NRV2E_8"
	case methodStored:
		return "stored"
	}
	return fmt.Sprintf("method %d", uint8(m))
}

// Segment is one PT_LOAD file range of the restored file.
type Segment struct {
	Offset, Size int64
	Exec         bool
}

// Unpacked is a packed file restored.
type Unpacked struct {
	// File is the restored file, byte for byte what "upx -d" writes.
	File []byte
	// Segments are the restored file's PT_LOAD file ranges: what the host
	// would load.
	Segments []Segment
	// Arch is "amd64", "386", "arm64", "arm", "mips", "mipsle" or
	// "ppc64le".
	Arch string
	// Method is the compression method of the program's blocks.
	Method Method
	// Version is UPX's format version (l_info.l_version): 13 for UPX 3.9x,
	// 14 for 4.x.
	Version uint8
	// MarksAltered is set when UPX's "UPX!" marks were rewritten, as
	// packers hiding UPX from "upx -t" do.
	MarksAltered bool
	// Checksummed is set when the packed file's trailer (UPX's PackHeader)
	// was found and both of its Adler-32 checksums matched. Without the
	// trailer the file is unpacked all the same, from its block headers.
	Checksummed bool
}

// Describe says in a few words what was unpacked, for a finding's
// message: "UPX 3.9x, NRV2E, amd64, marks rewritten".
func (u *Unpacked) Describe() string {
	v := fmt.Sprintf("format %d", u.Version)
	switch u.Version {
	case 13:
		v = "3.9x"
	case 14:
		v = "4.x"
	}
	s := fmt.Sprintf("UPX %s, %s, %s", v, u.Method, u.Arch)
	if u.MarksAltered {
		s += ", marks rewritten"
	}
	if !u.Checksummed {
		s += ", no checksum trailer"
	}
	return s
}

const (
	emI386    = 3
	emMIPS    = 8
	emPPC64   = 21
	emARM     = 40
	emX86_64  = 62
	emAArch64 = 183

	ptLoad = 1
	pfX    = 1

	lInfoSize = 12 // l_info: checksum, magic, lsize, version, format
	pInfoSize = 12 // p_info: progid, filesize, blocksize
	bInfoSize = 12 // b_info: sz_unc, sz_cpr, method, ftid, cto8, unused

	magicLE = 0x21585055 // "UPX!" read as a little-endian word
)

// elfShape is what Unpack needs of an ELF header, for the packed file and
// for the original one it restores.
type elfShape struct {
	order     binary.ByteOrder // of the headers and of UPX's own structures
	is64      bool
	machine   uint16
	phoff     uint64
	phentsize uint16
	phnum     uint16
	ehsize    uint16
}

type phdr struct {
	typ, flags     uint32
	offset, filesz uint64
}

func parseELF(b []byte) (elfShape, bool) {
	var e elfShape
	if len(b) < 52 || string(b[:4]) != "\x7fELF" {
		return e, false
	}
	switch b[5] {
	case 1:
		e.order = binary.LittleEndian
	case 2:
		e.order = binary.BigEndian
	default:
		return e, false
	}
	le := e.order
	switch b[4] {
	case 1:
		e.machine = le.Uint16(b[18:])
		e.phoff = uint64(le.Uint32(b[28:]))
		e.ehsize, e.phentsize, e.phnum = le.Uint16(b[40:]), le.Uint16(b[42:]), le.Uint16(b[44:])
		if e.ehsize != 52 || e.phentsize != 32 {
			return e, false
		}
	case 2:
		if len(b) < 64 {
			return e, false
		}
		e.is64 = true
		e.machine = le.Uint16(b[18:])
		e.phoff = le.Uint64(b[32:])
		e.ehsize, e.phentsize, e.phnum = le.Uint16(b[52:]), le.Uint16(b[54:]), le.Uint16(b[56:])
		if e.ehsize != 64 || e.phentsize != 56 {
			return e, false
		}
	default:
		return e, false
	}
	return e, true
}

func (e elfShape) arch() string {
	if e.order == binary.BigEndian {
		if e.machine == emMIPS && !e.is64 {
			return "mips"
		}
		return ""
	}
	switch {
	case e.machine == emX86_64 && e.is64:
		return "amd64"
	case e.machine == emI386 && !e.is64:
		return "386"
	case e.machine == emAArch64 && e.is64:
		return "arm64"
	case e.machine == emARM && !e.is64:
		return "arm"
	case e.machine == emMIPS && !e.is64:
		return "mipsle"
	case e.machine == emPPC64 && e.is64:
		return "ppc64le"
	}
	return ""
}

// phdrs parses the program headers in b, which holds the ELF header and
// the table right after it.
func (e elfShape) phdrs(b []byte) []phdr {
	le := e.order
	ps := make([]phdr, 0, e.phnum)
	for i := range int(e.phnum) {
		p := b[int(e.ehsize)+i*int(e.phentsize):]
		if e.is64 {
			ps = append(ps, phdr{typ: le.Uint32(p), flags: le.Uint32(p[4:]), offset: le.Uint64(p[8:]), filesz: le.Uint64(p[32:])})
		} else {
			ps = append(ps, phdr{typ: le.Uint32(p), flags: le.Uint32(p[24:]), offset: uint64(le.Uint32(p[4:])), filesz: uint64(le.Uint32(p[16:]))})
		}
	}
	return ps
}

type bInfo struct {
	unc, cpr   uint32
	method     Method
	ftid, cto8 byte
}

func parseBInfo(b []byte, le binary.ByteOrder) bInfo {
	return bInfo{unc: le.Uint32(b), cpr: le.Uint32(b[4:]), method: Method(b[8]), ftid: b[9], cto8: b[10]}
}

// unpacker holds the state of one Unpack call.
type unpacker struct {
	order     binary.ByteOrder
	r         io.ReaderAt
	size      int64
	pos       int64 // next b_info
	blocksize uint32
	buf       []byte // compressed block
	uAdler    hash.Hash32
	cAdler    hash.Hash32
	first     Method
}

func (u *unpacker) readAt(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > u.size {
		return fmt.Errorf("%w: %d bytes at offset %d run past the end of the %d-byte file", ErrCorrupt, len(b), off, u.size)
	}
	if _, err := u.r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(len(b)) == u.size) {
		return fmt.Errorf("read %d bytes at offset %d: %w", len(b), off, err)
	}
	return nil
}

// block reads the b_info at u.pos and decodes its block into dst, which
// must be at least as large as the block declares, and returns the number
// of bytes written.
func (u *unpacker) block(dst []byte) (int, error) {
	var hb [bInfoSize]byte
	if err := u.readAt(hb[:], u.pos); err != nil {
		return 0, err
	}
	h := parseBInfo(hb[:], u.order)
	if h.unc == 0 || h.cpr == 0 || h.cpr > h.unc || h.unc > u.blocksize || int64(h.unc) > int64(len(dst)) {
		return 0, fmt.Errorf("%w: b_info at offset %d declares %d bytes from %d, blocks are at most %d and %d are wanted", ErrCorrupt, u.pos, h.unc, h.cpr, u.blocksize, len(dst))
	}
	src := u.buf[:h.cpr]
	if err := u.readAt(src, u.pos+bInfoSize); err != nil {
		return 0, err
	}
	out := dst[:h.unc]
	if err := decompress(h, src, out); err != nil {
		return 0, fmt.Errorf("%w: block at offset %d (%s, %d bytes from %d): %w", ErrCorrupt, u.pos, h.method, h.unc, h.cpr, err)
	}
	u.cAdler.Write(src)
	u.uAdler.Write(out)
	if h.cpr < h.unc {
		if u.first == methodStored {
			u.first = h.method
		}
	}
	u.pos += bInfoSize + int64(h.cpr)
	return int(h.unc), nil
}

func decompress(h bInfo, src, dst []byte) error {
	if h.cpr == h.unc {
		copy(dst, src) // stored: it did not compress
		return nil
	}
	var err error
	switch h.method {
	case MethodNRV2B:
		err = nrvDecompress(nrv2b, src, dst)
	case MethodNRV2D:
		err = nrvDecompress(nrv2d, src, dst)
	case MethodNRV2E:
		err = nrvDecompress(nrv2e, src, dst)
	case MethodNRV2B8:
		err = nrvDecompress8(nrv2b, src, dst)
	case MethodNRV2D8:
		err = nrvDecompress8(nrv2d, src, dst)
	case MethodNRV2E8:
		err = nrvDecompress8(nrv2e, src, dst)
	case MethodLZMA:
		err = lzmaDecompress(src, dst)
	default:
		return fmt.Errorf("unknown method %d", uint8(h.method))
	}
	if err != nil {
		return err
	}
	return unfilter(h.ftid, h.cto8, dst)
}
