package scanner

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"slices"

	"github.com/pullgate/pullgate/internal/bytepairs"
)

// Archives behind a prefix that are not one compressed stream: zip
// entries that no end record lists, and XAR archives (see behindPrefix).

// zipLocalPair finds zip local headers ("PK\x03\x04") by their last two
// bytes.
var zipLocalPair = bytepairs.NewSet([2]byte{3, 4})

// zipEntryStarts lists, up to max of them, where data holds zip entries
// behind its start that no end record lists: a local header followed by
// data a streaming extractor unpacks (gzip -d, funzip and bsdtar unpack
// the first entry of such a file, a script can cut it out with tail).
// Each is walked from its local header on, as a zip without a central
// directory (see walkZipLocal); an entry that follows the one before it
// is part of that walk.
func zipEntryStarts(data []byte, max int) []int {
	var starts []int
	next := -1 // where the entry after the last one listed starts
	zipLocalPair.Each(data, func(k int) {
		at := k - 2
		if at < 1 || at == next || len(starts) >= max || !bytes.HasPrefix(data[at:], zipMagic) {
			return
		}
		end, ok := zipEntryUnpacks(data[at:])
		if !ok {
			return
		}
		next = -1
		if end > 0 {
			next = at + end
		}
		starts = append(starts, at)
	})
	return starts
}

// zipEntryUnpacks says whether b starts with a zip local header whose
// entry gives a first byte (stored or deflated; one of the other methods
// pullgate decodes, with data), and where the entry's data ends when its
// header says (0 when only a data descriptor does).
func zipEntryUnpacks(b []byte) (end int, ok bool) {
	if len(b) < 30 {
		return 0, false
	}
	le := binary.LittleEndian
	flags, method := le.Uint16(b[6:]), zipMethodOf(le.Uint16(b[8:]))
	csize := int(le.Uint32(b[18:]))
	dataOff := 30 + int(le.Uint16(b[26:])) + int(le.Uint16(b[28:]))
	if dataOff >= len(b) || flags&zipEncrypted != 0 {
		return 0, false
	}
	if flags&zipDescriptor == 0 && csize > 0 && dataOff+csize <= len(b) {
		end = dataOff + csize
	}
	switch method {
	case zip.Store:
		// gzip -d takes a stored entry whose two sizes agree.
		return end, csize > 0 && csize == int(le.Uint32(b[22:])) || flags&zipDescriptor != 0
	case zip.Deflate:
		fr := flate.NewReader(bytes.NewReader(b[dataOff:]))
		defer fr.Close()
		n, _ := io.ReadFull(fr, make([]byte, 1))
		return end, n == 1
	}
	// The other methods pullgate decodes (bzip2, LZMA, zstd, xz), which
	// bsdtar unpacks too.
	return end, zipDecoded(method) && (csize > 0 || flags&zipDescriptor != 0)
}

// xarStart is where data holds a XAR archive's header, or -1: "xar!", a
// header size of at least 28 and version 1, as bsdtar writes and reads
// it. bsdtar reads one from a pipe, so one behind a prefix counts too.
func xarStart(data []byte) int {
	for off := 0; ; {
		i := bytes.Index(data[off:], xarMagic)
		if i < 0 {
			return -1
		}
		at := off + i
		if h := data[at:]; len(h) >= 28 && binary.BigEndian.Uint16(h[4:]) >= 28 && binary.BigEndian.Uint16(h[6:]) == 1 {
			return at
		}
		off = at + 1
	}
}

// zlibStarts lists the zlib and .lzma streams in data from a XAR
// archive's start at on: its table of contents and, by default, each of
// its files is a zlib stream, behind binary bytes.
func zlibStarts(data []byte, at int) []int {
	var offs []int
	set := magicSets[2]
	set.pairs.Each(data[at:], func(k int) {
		for _, sm := range set.magics {
			if data[at+k] == sm.m[0] && data[at+k+1] == sm.m[1] {
				offs = sm.appendAt(offs, data, at+k, at, len(data))
			}
		}
	})
	// bsdtar's LZMA encoding for XAR files is LZMA's own format, found
	// by its properties and the NUL of its dictionary size's low byte.
	lzmaMagic := streamMagics[slices.IndexFunc(streamMagics, func(sm streamMagic) bool { return sm.set == noSet })]
	xarLzma := append(bytes.Clone(lzmaMagic.m), 0)
	for off := at; ; {
		i := bytes.Index(data[off:], xarLzma)
		if i < 0 {
			break
		}
		offs = lzmaMagic.appendAt(offs, data, off+i, at, len(data))
		off += i + 1
	}
	return offs
}
