package scanner

import (
	"bytes"
	"fmt"
	"slices"
)

// appendRawArchives appends to out the uncompressed tars and cpio
// archives behind data's first byte (see rawArchiveStarts). A compressed
// file read to its end is not searched for them: its stream's output
// holds them, and an xz or gzip stream stores incompressible stretches as
// they are, a tar's headers among them (a Debian package's data.tar.xz).
func appendRawArchives(out []*archived, data []byte) []*archived {
	for _, r := range rawArchiveStarts(data, 1, maxListed(int64(len(data)))) {
		out = append(out, &archived{kind: r.kind, data: data[r.at:], off: int64(r.at), at: fmt.Sprintf("%s@%d", r.name, r.at)})
	}
	return out
}

// rawArchive is where an uncompressed archive starts behind a prefix.
type rawArchive struct {
	at   int
	kind archiveKind
	name string
}

// rawArchiveStarts lists, from from on, up to max tars (a header block
// whose checksum holds, by its "ustar" magic) and cpio archives (a header
// in the newc or odc form) that start behind data's first byte:
// tail -c | tar x (makeself --nocomp, a script's appended tar) and
// tail -c | cpio -i unpack them (outside attack round 20b, R7).
func rawArchiveStarts(data []byte, from, max int) []rawArchive {
	if from >= len(data) || bytes.IndexByte(data[from:], 0) < 0 {
		// Both hold NULs (a tar's header, a cpio's names and padding):
		// text with none, most of what a layer holds, is passed over in
		// one fast pass.
		return nil
	}
	var out []rawArchive
	for _, m := range []struct {
		magic []byte
		back  int
		kind  archiveKind
		name  string
	}{{ustarMagic, 257, archiveTar, "tar"}, {[]byte("07070"), 0, archiveCpio, "cpio"}} {
		for i := 0; len(out) < max; i++ {
			j := bytes.Index(data[i:], m.magic)
			if j < 0 {
				break
			}
			i += j
			at := i - m.back
			switch {
			case at < from:
			case m.kind == archiveTar && at+blockSize <= len(data) && headerBlock(data[at:at+blockSize]) && data[at] != 0,
				m.kind == archiveCpio && isCpio(data[at:]) && cpioHeaderLen(data[at:]) > 26:
				out = append(out, rawArchive{at, m.kind, m.name})
			}
		}
	}
	slices.SortFunc(out, func(a, b rawArchive) int { return a.at - b.at })
	return out
}
