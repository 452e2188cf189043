package scanner

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
)

// cpio archives, in the forms cpio -i and bsdtar extract: newc
// ("070701", and "070702" with checksums: initramfs images, rpm payloads)
// and odc ("070707": POSIX, bsdtar --format=cpio). Each regular file is
// scanned as a member, as a tar's are, and the archive's own bytes (its
// headers, the bytes of a name after its NUL, its padding, what a
// symbolic link's body names) are searched as a tar's are (see tarOwn).
// Unread, a cpio of many small compressed files was a file with more
// streams behind its start than are read, refused (outside attack round
// 20, FB1).

// cpioHeader is one member's header.
type cpioHeader struct {
	name      string
	mode      int64
	size      int64
	nameSize  int64
	align     int64 // what the name (after the header) and the body are padded to
	headerLen int64
}

// cpioNameMax is the longest name read: cpio and bsdtar take longer ones
// than PATH_MAX, and a longer one is refused, unread.
const cpioNameMax = 1 << 20

// cpioJunkMax is how far the walk looks for the next header past bytes
// that are none, a byte at a time; past it the archive is refused.
const cpioJunkMax = 16 << 20

// cpioHeaderLen is the length of the header whose first 6 bytes are b,
// by its magic: newc, crc, odc, or old binary (0x71c7 in either byte
// order); 0 for none.
func cpioHeaderLen(b []byte) int {
	switch {
	case len(b) >= 6 && (string(b[:6]) == "070701" || string(b[:6]) == "070702"):
		return 110
	case len(b) >= 6 && string(b[:6]) == "070707":
		return 76
	case len(b) >= 2 && (b[0] == 0xc7 && b[1] == 0x71 || b[0] == 0x71 && b[1] == 0xc7):
		return 26
	}
	return 0
}

// isCpio says whether head starts a cpio archive: a header in one of the
// forms above whose fields are numbers, and, for the binary form, whose
// magic is two bytes only, a name that is text ending in a NUL.
func isCpio(head []byte) bool {
	h, err := parseCpioHeader(head)
	if err != nil || h.headerLen != 26 {
		return err == nil
	}
	name := head[26:min(len(head), 26+int(h.nameSize))]
	return int64(len(name)) == h.nameSize && name[len(name)-1] == 0 &&
		bytes.IndexFunc(name[:len(name)-1], func(r rune) bool { return r < ' ' || r > '~' }) < 0
}

// parseCpioHeader reads the fixed part of the header b starts with.
func parseCpioHeader(b []byte) (cpioHeader, error) {
	n := cpioHeaderLen(b)
	h := cpioHeader{headerLen: int64(n), align: 1}
	if n == 0 || len(b) < n {
		return h, fmt.Errorf("no cpio header")
	}
	if n == 26 {
		order := binary.ByteOrder(binary.LittleEndian)
		if b[0] == 0x71 {
			order = binary.BigEndian
		}
		word := func(i int) int64 { return int64(order.Uint16(b[2*i:])) }
		h.mode, h.nameSize, h.size = word(3), word(10), word(11)<<16|word(12)
		h.align = 2
		if h.nameSize < 1 {
			return h, fmt.Errorf("a cpio header with no name")
		}
		return h, nil
	}
	base, digits := 16, "0123456789abcdefABCDEF"
	if n == 76 {
		base, digits = 8, "01234567"
	}
	if bytes.IndexFunc(b[6:n], func(r rune) bool { return !bytes.ContainsRune([]byte(digits), r) }) >= 0 {
		return h, fmt.Errorf("a cpio header whose fields are not numbers")
	}
	field := func(from, w int) int64 {
		v, _ := strconv.ParseInt(string(b[from:from+w]), base, 64)
		return v
	}
	if n == 110 {
		h.mode, h.size, h.nameSize, h.align = field(14, 8), field(54, 8), field(94, 8), 4
	} else {
		h.mode, h.nameSize, h.size = field(18, 6), field(59, 6), field(65, 11)
	}
	if h.nameSize < 1 {
		return h, fmt.Errorf("a cpio header with no name")
	}
	return h, nil
}

// walkCpio walks a cpio archive read from r, its members scanned as
// members of parent, its own bytes searched as a tar's are. An initramfs
// image is several archives one after the other, NULs between them, and
// the kernel unpacks them all: a cpio after a trailer is walked too. What
// follows the last one is left to the caller, which is told how many of
// its bytes were read (extra).
func (w *walker) walkCpio(parent item, r io.Reader) (extra int64, err error) {
	cr := &tarCounter{r: r}
	extra, err = w.walkCpioOf(parent, cr, func() error { return w.searchTarOwn(parent, &cr.own, false, false) })
	if w.hardError(err) {
		return extra, err
	}
	return extra, cmp.Or(w.searchTarOwn(parent, &cr.own, false, true), err)
}

// walkCpioOf is walkCpio's walk; after each member it calls flush.
// Bytes that are no header between members are skipped to the next
// header, as GNU cpio and bsdtar skip them ("skipped N bytes of junk"),
// and the walk ends with that error once the rest is read; they are kept
// as the archive's own bytes, searched.
func (w *walker) walkCpioOf(parent item, cr *tarCounter, flush func() error) (int64, error) {
	var junk error
	trailer := false
	for {
		h, extra, err := w.nextCpioHeader(cr, trailer)
		if err != nil || h.headerLen == 0 {
			return extra, cmp.Or(err, junk)
		}
		if extra > 0 {
			junk = cmp.Or(junk, corruptError(fmt.Sprintf("cpio %s", parent.shown()), fmt.Errorf("%d bytes of junk before the header at %d skipped", extra, cr.n-h.headerLen)))
		}
		if h.nameSize > cpioNameMax {
			return 0, unsupportedError("cpio %s: a member's name of %d bytes, over the %d read", parent.shown(), h.nameSize, cpioNameMax)
		}
		name := make([]byte, h.nameSize)
		if _, err := io.ReadFull(cr, name); err != nil {
			return 0, noEOF(err)
		}
		if err := skipCpioPad(cr, h, h.headerLen+h.nameSize); err != nil {
			return 0, err
		}
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		h.name = string(name)
		if h.name == "TRAILER!!!" {
			trailer = true
			continue
		}
		trailer = false
		if err := w.cpioBody(parent, cr, h); err != nil {
			return 0, err
		}
		if err := skipCpioPad(cr, h, h.size); err != nil {
			return 0, err
		}
		if err := flush(); err != nil {
			return 0, err
		}
	}
}

// nextCpioHeader reads the next header's fixed part. After a trailer it
// first passes over NULs: what follows is another cpio (an initramfs is
// several), or, when it is none, the end: h is zero, and extra is how
// many of its bytes were read. Elsewhere, bytes before the next header
// are skipped, extra of them; h is zero at the end of cr.
func (w *walker) nextCpioHeader(cr *tarCounter, trailer bool) (h cpioHeader, extra int64, err error) {
	buf := make([]byte, 110)
	if trailer {
		for buf[0] = 0; buf[0] == 0; {
			if _, err := io.ReadFull(cr, buf[:1]); err != nil {
				return h, 0, nil
			}
		}
		k, _ := io.ReadFull(cr, buf[1:6])
		if cpioHeaderLen(buf[:1+k]) == 0 {
			return h, int64(1 + k), nil
		}
	} else if _, err := io.ReadFull(cr, buf[:6]); err != nil {
		return h, 0, noEOF(err) // a cpio ends with its trailer
	}
	for cpioHeaderLen(buf[:6]) == 0 {
		if extra >= cpioJunkMax {
			return h, extra, unsupportedError("more than %d MiB of bytes that are no cpio header", cpioJunkMax>>20)
		}
		copy(buf, buf[1:6])
		if _, err := io.ReadFull(cr, buf[5:6]); err != nil {
			return h, extra, noEOF(err)
		}
		extra++
	}
	n := cpioHeaderLen(buf[:6])
	if _, err := io.ReadFull(cr, buf[6:n]); err != nil {
		return h, extra, noEOF(err)
	}
	h, err = parseCpioHeader(buf[:n])
	if err != nil {
		return h, extra, corruptError(fmt.Sprintf("cpio header at %d", cr.n-int64(n)), err)
	}
	return h, extra, nil
}

// cpioBody scans the body of a regular file as a member; any other body
// (a symbolic link's target) is read as the archive's own bytes.
func (w *walker) cpioBody(parent item, cr *tarCounter, h cpioHeader) error {
	if h.mode&0o170000 != 0o100000 {
		_, err := io.CopyN(io.Discard, cr, h.size)
		return noEOF(err)
	}
	child := parent.member(memberName(h.name), h.mode&0o111 != 0)
	size, err := w.countMember(child.where, h.size)
	if err != nil {
		return err
	}
	return cr.own.body(func() error {
		_, err := w.scanFile(child, io.LimitReader(cr, h.size), size)
		return err
	})
}

// skipCpioPad reads the padding after n bytes (a header and its name, or
// a body) to a multiple of h's alignment: 4 for newc, 2 for the binary
// form, none for odc.
func skipCpioPad(cr *tarCounter, h cpioHeader, n int64) error {
	_, err := io.CopyN(io.Discard, cr, (h.align-n%h.align)%h.align)
	return noEOF(err)
}
