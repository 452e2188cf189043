package scanner

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"io"
)

// A compressed file larger than one window is searched behind its start
// as one in a window is (see unarchiveBehindOwn): for what its own stream
// does not cover, which gzip -dc and zstd -dc pass over and tail -c cuts
// out. A later gzip member's header fields, a skippable frame between
// zstd frames, what follows the stream, and a later member or frame
// whose output starts as a file. The file is spooled as its windows are
// read (fileWindows.compSpool, written by firstWindow and restReader),
// and the spool searched once the stream is read (searchSpooledOutside),
// passing over the starts of what the stream read on into.

// ownOfLarge is what reading the large compressed file of size bytes,
// spooled to sp, covered: read are the gzip members the reading went on
// into, whole whether it read the stream to its end without an error, c
// its compression.
func (w *walker) ownOfLarge(sp *spool, size int64, c compression, read map[int64]bool, whole bool) (ownStream, error) {
	own := ownStream{read: read}
	if !whole {
		return own, nil
	}
	own.whole = c
	if c == compressedZstd {
		frames, err := zstdFrameStartsAt(sp, size)
		if err != nil {
			return own, err
		}
		own.frames = frames
	}
	return own, nil
}

// searchLargeCompressed searches the spool of the large compressed file
// it for what its own stream, own, did not cover (see unarchiveBehindOwn
// for the frames read on their own too).
func (w *walker) searchLargeCompressed(it item, sp *spool, size int64, own ownStream) error {
	covered, herr := w.ownCovered(&own, sp, size)
	head := make([]byte, min(size, 4096))
	if err := sp.readAt(head, 0); err != nil {
		return err
	}
	err := w.searchSpooledOutside(it, sp, size, int64(streamText(head)), true, spoolOwn{own: own, skip: covered})
	return cmp.Or(*herr, err)
}

// zstdFrameStartsAt is zstdFrameStarts for a zstd file of size bytes read
// from ra: only its frames' and blocks' headers are read.
func zstdFrameStartsAt(ra io.ReaderAt, size int64) (map[int64]bool, error) {
	le := binary.LittleEndian
	starts := map[int64]bool{}
	hdr := make([]byte, 18)
	read := func(off int64, n int) ([]byte, bool, error) {
		if off+int64(n) > size {
			return nil, false, nil
		}
		_, err := ra.ReadAt(hdr[:n], off)
		return hdr[:n], err == nil, err
	}
	for off := int64(0); ; {
		h, ok, err := read(off, 8)
		if !ok {
			return starts, err
		}
		magic := le.Uint32(h)
		switch {
		case magic&0xFFFFFFF0 == 0x184D2A50: // skippable
			off += 8 + int64(le.Uint32(h[4:]))
			continue
		case magic != 0xFD2FB528:
			return starts, nil
		}
		// The frame header, then its blocks' headers (see zstdFrameLen).
		h, ok, err = read(off, min(18, int(size-off)))
		if !ok || len(h) < 5 {
			return starts, err
		}
		fhd := h[4]
		n := int64(5 + [4]int{0, 1, 2, 4}[fhd&3] + [4]int{0, 2, 4, 8}[fhd>>6])
		if fhd>>5&1 == 0 {
			n++
		} else if fhd>>6 == 0 {
			n++
		}
		for {
			b, ok, err := read(off+n, 3)
			if !ok {
				return starts, err
			}
			v := int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16
			last, kind, bsize := v&1 == 1, v>>1&3, v>>3
			switch kind {
			case 1:
				bsize = 1
			case 3:
				return starts, nil
			}
			n += 3 + bsize
			if last {
				break
			}
		}
		if fhd>>2&1 == 1 {
			n += 4
		}
		if off+n > size {
			return starts, nil
		}
		starts[off] = true
		off += n
	}
}

// decodedHead is the first memberHead bytes the stream of compression c
// read from r decodes to, or fewer.
func (w *walker) decodedHead(c compression, r io.Reader) (head []byte, err error) {
	head = make([]byte, memberHead)
	n := 0
	err = w.releasingBig(func() error {
		body, release, err := decompressTrial(c, bufio.NewReader(r), w.chargeDecoder)
		if err != nil {
			return err
		}
		defer release()
		n, err = io.ReadFull(&unarchiveReader{r: decoderErrors(body), w: w, what: c.String() + " stream behind a file's start"}, head)
		return err
	})
	if err != nil && w.hardError(err) {
		return nil, err
	}
	return head[:n], nil
}
