package scanner

import (
	"bytes"
	"cmp"
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
	newc      bool // padded to 4 bytes after the name and the body
	headerLen int64
}

// isCpio says whether head starts a cpio archive: a header in one of the
// forms above whose fields are numbers.
func isCpio(head []byte) bool {
	_, err := parseCpioHeader(head)
	return err == nil
}

// parseCpioHeader reads the fixed part of the header b starts with.
func parseCpioHeader(b []byte) (cpioHeader, error) {
	field := func(from, n, base int) (int64, bool) {
		if len(b) < from+n {
			return 0, false
		}
		v, err := strconv.ParseInt(string(b[from:from+n]), base, 64)
		return v, err == nil && v >= 0
	}
	var h cpioHeader
	var ok1, ok2, ok3 bool
	switch {
	case len(b) >= 6 && (bytes.Equal(b[:6], []byte("070701")) || bytes.Equal(b[:6], []byte("070702"))):
		h.mode, ok1 = field(6+8, 8, 16)
		h.size, ok2 = field(6+6*8, 8, 16)
		h.nameSize, ok3 = field(6+11*8, 8, 16)
		h.newc, h.headerLen = true, 110
	case len(b) >= 6 && bytes.Equal(b[:6], []byte("070707")):
		h.mode, ok1 = field(18, 6, 8)
		h.nameSize, ok2 = field(59, 6, 8)
		h.size, ok3 = field(65, 11, 8)
		h.headerLen = 76
	default:
		return h, fmt.Errorf("no cpio header")
	}
	digits := "0123456789abcdefABCDEF"
	if !h.newc {
		digits = "01234567"
	}
	if len(b) < int(h.headerLen) || bytes.IndexFunc(b[6:h.headerLen], func(r rune) bool { return !bytes.ContainsRune([]byte(digits), r) }) >= 0 {
		return h, fmt.Errorf("a cpio header whose fields are not numbers")
	}
	if !ok1 || !ok2 || !ok3 || h.nameSize < 1 || h.nameSize > 4096 {
		return h, fmt.Errorf("a cpio header whose fields are not numbers")
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

// cpioMagics are the header lengths of the forms of cpio, by magic.
var cpioMagics = map[string]int{"070701": 110, "070702": 110, "070707": 76}

// walkCpioOf is walkCpio's walk; after each member it calls flush.
func (w *walker) walkCpioOf(parent item, cr *tarCounter, flush func() error) (int64, error) {
	buf := make([]byte, 110+4096)
	trailer := false
	for {
		at := cr.n
		if trailer {
			// Past the NULs after a trailer: another cpio, or the end.
			for buf[0] = 0; buf[0] == 0; {
				if _, err := io.ReadFull(cr, buf[:1]); err != nil {
					return 0, nil
				}
			}
			at = cr.n - 1
			k, _ := io.ReadFull(cr, buf[1:6])
			if cpioMagics[string(buf[:1+k])] == 0 {
				return int64(1 + k), nil
			}
		} else if _, err := io.ReadFull(cr, buf[:6]); err != nil {
			return 0, noEOF(err) // a cpio ends with its trailer
		}
		n := cpioMagics[string(buf[:6])]
		if n == 0 {
			return 0, corruptError(fmt.Sprintf("cpio %s at %d", parent.shown(), at), fmt.Errorf("no cpio header"))
		}
		if _, err := io.ReadFull(cr, buf[6:n]); err != nil {
			return 0, noEOF(err)
		}
		h, err := parseCpioHeader(buf[:n])
		if err != nil {
			return 0, corruptError(fmt.Sprintf("cpio %s at %d", parent.shown(), at), err)
		}
		name := buf[h.headerLen : h.headerLen+h.nameSize]
		if _, err := io.ReadFull(cr, name); err != nil {
			return 0, noEOF(err)
		}
		if err := w.skipCpioPad(cr, h, h.headerLen+h.nameSize); err != nil {
			return 0, err
		}
		h.name = string(bytes.TrimRight(name[:bytes.IndexByte(append(name, 0), 0)], "\x00"))
		if h.name == "TRAILER!!!" {
			trailer = true
			continue
		}
		if err := w.cpioBody(parent, cr, h); err != nil {
			return 0, err
		}
		if err := w.skipCpioPad(cr, h, h.size); err != nil {
			return 0, err
		}
		if err := flush(); err != nil {
			return 0, err
		}
	}
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

// skipCpioPad reads the padding newc puts after n bytes (a header and its
// name, or a body) to a multiple of 4.
func (w *walker) skipCpioPad(cr *tarCounter, h cpioHeader, n int64) error {
	if !h.newc {
		return nil
	}
	_, err := io.CopyN(io.Discard, cr, (4-n%4)%4)
	return noEOF(err)
}
