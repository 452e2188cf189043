package scanner

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"io"
	"slices"
)

// scanZipGaps scans as bytes, under the zip's own name, what no header,
// member data, data descriptor, nor the directory and its end record
// cover, past head (the bytes already scanned as the zip's head): bytes a
// streaming extractor may read as an entry the local walk could not get
// to, or that are there for no reader at all. A zip as tools write it has
// none.
func (w *walker) scanZipGaps(zw *zipWalk, head int64) error {
	zw.coverDirectory()
	slices.SortFunc(zw.spans, func(a, b zipSpan) int { return cmp.Compare(a.from, b.from) })
	at := int64(0)
	for _, s := range append(zw.spans, zipSpan{zw.size, zw.size}) {
		if s.from > at && s.from > head {
			if err := w.scanGap(zw, at, s.from); err != nil {
				return err
			}
		}
		at = max(at, s.to)
	}
	return nil
}

func (w *walker) scanGap(zw *zipWalk, from, to int64) error {
	it := zw.it
	it.opaque = true
	w.rescanned += to - from
	if w.scanned() > w.s.limits.MaxLayerBytes {
		return limitError("zip %s scanned again between its entries takes the bytes scanned past MaxLayerBytes %d", it.shown(), w.s.limits.MaxLayerBytes)
	}
	_, err := w.scanFile(it, io.NewSectionReader(zw.ra, from, to-from), to-from)
	return err
}

// coverDirectory covers the central directory and the end records, as
// the end record (and its zip64 locator) place them; what cannot be
// found is left to be scanned as a gap.
func (zw *zipWalk) coverDirectory() {
	le := binary.LittleEndian
	// Most zips have no comment: their end record is their last 22 bytes.
	tailLen := min(zw.size, 22)
	var last [22]byte
	tail := last[:tailLen]
	if _, err := zw.ra.ReadAt(tail, zw.size-tailLen); err != nil {
		return
	}
	if len(tail) < 22 || !bytes.HasPrefix(tail, zipEndMagic) || le.Uint32(tail[16:]) == 0xFFFFFFFF {
		// A comment, or zip64 records before it: the end record is
		// searched for in the last 64 KiB and 22 bytes.
		tailLen = min(zw.size, 1<<16+22)
		tail = make([]byte, tailLen)
		if _, err := zw.ra.ReadAt(tail, zw.size-tailLen); err != nil {
			return
		}
	}
	i := bytes.LastIndex(tail, zipEndMagic)
	if i < 0 || len(tail)-i < 22 {
		return
	}
	endAt := zw.size - tailLen + int64(i)
	zw.cover(endAt, zw.size)
	dirSize, dirOff := int64(le.Uint32(tail[i+12:])), int64(le.Uint32(tail[i+16:]))
	if dirOff == 0xFFFFFFFF && i >= 20 && bytes.Equal(tail[i-20:i-16], []byte("PK\x06\x07")) {
		rec := int64(le.Uint64(tail[i-12:]))
		var z [56]byte
		if rec < 0 || rec >= endAt {
			return
		}
		if _, err := zw.ra.ReadAt(z[:], rec); err != nil || !bytes.Equal(z[:4], []byte("PK\x06\x06")) {
			return
		}
		zw.cover(rec, endAt)
		dirSize, dirOff = int64(le.Uint64(z[40:])), int64(le.Uint64(z[48:]))
	}
	if dirOff >= 0 && dirSize >= 0 && dirOff <= zw.size && dirSize <= zw.size-dirOff {
		zw.cover(dirOff, dirOff+dirSize)
	}
}

// zipSpan is a stretch of a zip that a walk read: a header, member data, a
// descriptor, the directory or an end record.
type zipSpan struct{ from, to int64 }

func (zw *zipWalk) cover(from, to int64) {
	if to > from {
		zw.spans = append(zw.spans, zipSpan{from, to})
	}
}
