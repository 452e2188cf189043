package scanner

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Debian packages. A .deb (or .udeb) is an ar archive whose first member
// is debian-binary, then control.tar.* and data.tar.*, which dpkg -i and
// dpkg-deb -x unpack onto the host. Each member is scanned as a file of
// its own, and looked into in turn (data.tar.xz is a compressed tar). The
// package is read as a stream, so one larger than the scan window is read
// as it goes by. Other ar archives (static libraries, .a) are scanned as
// bytes only: nothing on the host unpacks them to run what they hold, and
// unpacking them would scan every object file twice.

var (
	arMagic  = []byte("!<arch>\n")
	debMagic = []byte("!<arch>\ndebian-binary")
)

// isDeb says whether head starts as a Debian package: an ar archive whose
// first member is debian-binary, its name ended by a space or by GNU ar's
// "/", as dpkg reads the name.
func isDeb(head []byte) bool {
	n := len(debMagic)
	return bytes.HasPrefix(head, debMagic) && len(head) > n && (head[n] == ' ' || head[n] == '/')
}

const (
	arHeaderSize = 60
	// arMaxNames bounds GNU ar's table of long names, read whole.
	arMaxNames = 1 << 20
)

// walkAr walks the ar archive r reads, the file it, from its magic on.
func (w *walker) walkAr(it item, r io.Reader) error {
	var magic [len("!<arch>\n")]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || !bytes.Equal(magic[:], arMagic) {
		return corruptError("read ar archive", fmt.Errorf("no ar magic: %v", err))
	}
	var names []byte // GNU ar's table of long names ("//")
	var h [arHeaderSize]byte
	for {
		n, err := io.ReadFull(r, h[:1])
		if n == 0 && err == io.EOF {
			return nil
		}
		if err != nil {
			return corruptError("read ar archive", err)
		}
		if h[0] == '\n' {
			continue // the padding byte after an odd-sized member
		}
		if _, err := io.ReadFull(r, h[1:]); err != nil {
			return corruptError("read ar archive", noEOF(err))
		}
		if h[58] != '`' || h[59] != '\n' {
			return corruptError("read ar archive", errors.New("a member header has no end mark"))
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || size < 0 {
			return corruptError("read ar archive", fmt.Errorf("bad member size %q", h[48:58]))
		}
		name := strings.TrimRight(string(h[:16]), " ")
		body := io.LimitReader(r, size)
		if name == "//" {
			if size > arMaxNames {
				return limitError("ar table of long names is %d bytes, more than %d", size, arMaxNames)
			}
			if names, err = io.ReadAll(body); err != nil || int64(len(names)) != size {
				return corruptError("read ar archive", noEOF(cmp.Or(err, io.EOF)))
			}
			continue
		}
		name = arName(name, names)
		mode, _ := strconv.ParseInt(strings.TrimSpace(string(h[40:48])), 8, 64)
		child := it.member(name, mode&0o111 != 0)
		if size, err = w.countMember(child.where, size); err != nil {
			return err
		}
		if _, err := w.scanFile(child, body, size); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return corruptError("read ar archive", err)
		}
	}
}

// arName is a member's name as ar writes it: "name/" (GNU), "name", or
// "/offset" into the table of long names.
func arName(name string, names []byte) string {
	if at, err := strconv.Atoi(strings.TrimPrefix(name, "/")); err == nil && strings.HasPrefix(name, "/") && names != nil && at >= 0 && at < len(names) {
		long := names[at:]
		if end := bytes.Index(long, []byte("/\n")); end >= 0 {
			long = long[:end]
		}
		name = string(long)
	}
	name = memberName(strings.TrimSuffix(name, "/"))
	if name == "" || name == "." {
		name = "ar-symbols" // "/" is the symbol table, bytes all the same
	}
	return name
}
