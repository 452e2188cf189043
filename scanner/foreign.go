package scanner

import (
	"bytes"
	"fmt"
)

// Archives that bsdtar (libarchive) on a host unpacks and pullgate does
// not read: what they hold was never scanned, so a file that is one is
// refused, a high ArchiveUnreadable, as lzip is (outside attack round 21,
// F4 and F5). Each is known by a magic number of six bytes or more at its
// start.
var foreignArchives = []struct {
	magic []byte
	name  string
}{
	{[]byte("7z\xbc\xaf\x27\x1c"), "a 7-Zip archive, which 7z and bsdtar unpack"},
	{[]byte("Rar!\x1a\x07\x00"), "a RAR archive, which unrar and bsdtar unpack"},
	{[]byte("Rar!\x1a\x07\x01\x00"), "a RAR 5 archive, which unrar and bsdtar unpack"},
	{[]byte("MSCF\x00\x00\x00\x00"), "a Cabinet archive, which cabextract and bsdtar unpack"},
}

// zisofsMagic starts each file an ISO 9660 image stores compressed with
// zisofs (mkzftree, mkisofs -z): bsdtar and the kernel's isofs inflate
// it; an image of uncompressed files is scanned as the bytes it is.
var zisofsMagic = []byte("\x37\xe4\x53\x96\xc9\xdb\xd6\x07")

// isoMagicAt is where an ISO 9660 image's first volume descriptor names
// its standard identifier.
const isoMagicAt = 0x8001

// foreignArchive names the archive head starts, among those pullgate does
// not read, or says "". An ISO 9660 image is one only when head, what is
// held of it (a window of a larger image), holds a zisofs file.
func foreignArchive(head []byte) string {
	for _, f := range foreignArchives {
		if bytes.HasPrefix(head, f.magic) {
			return f.name
		}
	}
	if len(head) > isoMagicAt+5 && bytes.Equal(head[isoMagicAt:isoMagicAt+5], []byte("CD001")) &&
		bytes.Contains(head, zisofsMagic) {
		return "an ISO 9660 image of zisofs-compressed files, which bsdtar unpacks"
	}
	return ""
}

// foreignError refuses the archive data starts (see foreignArchive).
func foreignError(head []byte) error {
	return fmt.Errorf("%w: %s", errUnsupported, foreignArchive(head))
}
