package scanner

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/pierrec/lz4/v4"
	"github.com/pullgate/pullgate/internal/liblzma"
	"github.com/ulikunitz/xz/lzma"
)

// Two older single-file formats that hosts still unpack, found inside
// layers only (no client takes a layer in either): LZMA's own format
// (.lzma, lzma-alone: xz --format=lzma, unlzma, 7z) and compress(1)'s .Z
// (gzip -d and uncompress read it). Neither has a magic number of its
// own beyond a few header bytes, so the header is checked strictly.

// isLzmaAlone says whether b starts like an .lzma file as xz and the LZMA
// SDK write it: properties lc+lp*9+pb*45 under 225, a dictionary size of
// 2^n or 2^n+2^(n-1) from 4 KiB, or 2^32-1 (larger ones than xz's 64 MiB
// are decoded with 64 MiB, see decompressLzma), an uncompressed size that is unknown
// (all ones) or under 2^48, and the range coder's first byte, which is
// always zero. Other files pass these tests too (Kotlin's metadata files
// do), so a file taken for .lzma is scanned whole as bytes as well, and a
// decoding error in it is no finding (see walkStream): unlzma stops at the
// same error, and what decoded before it is scanned.
func isLzmaAlone(b []byte) bool {
	if len(b) < 14 || b[0] >= 9*5*5 || b[13] != 0 {
		return false
	}
	d := binary.LittleEndian.Uint32(b[1:5])
	if top := d >> bits.TrailingZeros32(d); d < 1<<12 || top != 1 && top != 3 && d != ^uint32(0) {
		return false
	}
	size := binary.LittleEndian.Uint64(b[5:13])
	return size == ^uint64(0) || size < 1<<48
}

// isLZ4 says whether b starts with an LZ4 frame's magic number, or the
// legacy format's (lz4 -l): lz4 and zstd -d unpack both, and so does
// pullgate (see newLZ4Reader).
func isLZ4(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0x04, 0x22, 0x4d, 0x18}) || bytes.HasPrefix(b, []byte{0x02, 0x21, 0x4c, 0x18})
}

// isLzip says whether b starts with lzip's header ("LZIP", version 0 or
// 1): lzip and bsdtar unpack it, pullgate does not.
func isLzip(b []byte) bool {
	return len(b) >= 5 && string(b[:4]) == "LZIP" && b[4] <= 1
}

// isLZW says whether b starts with compress(1)'s header: 1f 9d and a flag
// byte of at most 16 bits per code. gzip -d reads any such header: one
// under 9 bits adds no code to the table, and reserved bits set only
// draw a warning.
func isLZW(b []byte) bool {
	return len(b) >= 3 && b[0] == 0x1f && b[1] == 0x9d && b[2]&0x1f <= 16
}

// isOldGzip says whether b starts a gzip member with gzip 0.5's magic.
func isOldGzip(b []byte) bool { return bytes.HasPrefix(b, gzipOldMagic) }

// nestedCompression is detectCompression for a file inside a layer, which
// may also be in one of the older formats.
func nestedCompression(b []byte) compression {
	if rest, ok := pastSkippable(b); ok && isLZ4(rest) {
		// zstd and LZ4 share skippable frames: what follows says which.
		return compressedLZ4
	}
	switch c := detectCompression(b); {
	case c != uncompressed:
		return c
	case isOldGzip(b):
		return compressedGzip
	case isLzmaAlone(b):
		return compressedLzma
	case isLZW(b):
		return compressedLZW
	case isLZ4(b):
		return compressedLZ4
	case isLzip(b):
		return compressedLzip
	case isPack(b):
		return compressedPack
	case isZlib(b):
		return compressedZlib
	}
	return uncompressed
}

// decompressLzma decodes an .lzma file with liblzma, as xz, unlzma,
// bsdtar and dpkg on a host do (see internal/liblzma): every byte decoded
// before an error is read, as they write it out. Its dictionary is bounded
// and charged as an xz stream's is; maxCharge, if not zero, caps what is
// charged (see lzmaTrialDict). The function returned frees the decoder.
func decompressLzma(br *bufio.Reader, charge func(int64) error, maxCharge uint32) (io.Reader, func(), error) {
	h, err := br.Peek(13)
	if err != nil {
		return nil, nil, corruptError("read lzma header", err)
	}
	// A larger dictionary than xzMaxDict is not allocated: the stream is
	// decoded with xzMaxDict, which holds all of an output up to that
	// size, and one that reaches back farther is refused (ErrDictCap).
	// The host's unlzma allocates what the header asks (outside attack
	// round 22, F3).
	d := min(binary.LittleEndian.Uint32(h[1:5]), xzMaxDict)
	if charge != nil {
		c := max(d, lzma.MinDictCap)
		if maxCharge > 0 {
			c = min(c, maxCharge)
		}
		if err := charge(int64(c)); err != nil {
			return nil, nil, err
		}
	}
	lr, err := liblzma.NewCappedReader(br, xzMaxDict)
	if err != nil {
		return nil, nil, corruptError("read lzma header", err)
	}
	return &toTheEnd{r: lr, br: br}, lr.Close, nil
}

// lzmaMemLimit is what liblzma may allocate for one .lzma stream: the
// largest dictionary read (xzMaxDict) and the literal coder's tables,
// which take up to 6 MiB with the largest lc and lp a header may set.
const lzmaMemLimit = xzMaxDict + 8<<20

// lzmaTrialDict is the most an .lzma candidate's trial is charged for
// its dictionary (see decodesAsStream): liblzma allocates the dictionary a
// header asks for without touching it, and the trial's first streamTrial
// bytes touch no more of it than themselves.
const lzmaTrialDict = 64 << 10

// errAfterTheEnd is toTheEnd's error: the stream reached its end, and
// bytes follow it.
var errAfterTheEnd = errors.New("bytes after the end of the stream")

// toTheEnd fails a stream whose decoder ended before its file did, as the
// other decoders do (see decompress): what follows was not decoded, so the
// file is reported unreadable and scanned whole as bytes. It also gives
// liblzma's errors the scanner's meaning.
type toTheEnd struct {
	r  io.Reader
	br *bufio.Reader
}

func (t *toTheEnd) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	switch {
	case err == io.EOF:
		if _, more := t.br.Peek(1); more == nil {
			return n, corruptError("read lzma stream", errAfterTheEnd)
		}
	case errors.Is(err, liblzma.ErrMemLimit), errors.Is(err, liblzma.ErrDictCap):
		return n, limitError("%v (its header asks for more than %d bytes)", err, xzMaxDict)
	case err != nil:
		return n, corruptError("read lzma stream", err)
	}
	return n, err
}

// errLzip refuses lzip, a format not read (see docs/detection.md).
var errLzip = fmt.Errorf("%w: lzip, which lzip and bsdtar unpack", errUnsupported)

// newLZ4Reader decodes the LZ4 frames in br, of either format, one after
// another as lz4 -d does; skippable frames are skipped. A frame's blocks
// are at most 4 MiB (8 MiB in the legacy format), so its memory is
// bounded. A first frame naming a dictionary is read without it (see
// lz4WithoutDictID).
//
// A legacy frame whose first block is larger than the format allows is
// refused before the reader is made: lz4 -d writes nothing of one, and
// the reader would first take two 8 MiB buffers (programs that handle
// LZ4 carry the legacy magic followed by anything). release gives the
// reader's buffers back to their pool.
func newLZ4Reader(br *bufio.Reader) (r io.Reader, release func(), err error) {
	br = skipSkippable(br)
	if h, _ := br.Peek(8); len(h) == 8 && binary.LittleEndian.Uint32(h) == lz4LegacyMagic && binary.LittleEndian.Uint32(h[4:]) > lz4LegacyBound {
		return nil, nil, corruptError("read lz4 legacy frame", fmt.Errorf("a block of %d bytes, more than the format's %d", binary.LittleEndian.Uint32(h[4:]), lz4LegacyBound))
	}
	zr := lz4.NewReader(lz4WithoutDictID(br))
	return zr, func() { zr.Reset(nil) }, nil
}

// lz4LegacyMagic starts a legacy LZ4 frame (lz4 -l); its blocks hold at
// most 8 MiB, compressed to at most lz4LegacyBound bytes (LZ4_COMPRESSBOUND).
const (
	lz4LegacyMagic = 0x184c2102
	lz4LegacyBound = 8<<20 + 8<<20/255 + 16
)

// skipSkippable passes over the skippable frames (zstd's and LZ4's) at
// the start of br, as lz4 -d does before a frame of its own.
func skipSkippable(br *bufio.Reader) *bufio.Reader {
	for {
		h, err := br.Peek(8)
		if err != nil || binary.LittleEndian.Uint32(h)&zstdSkippableMask != zstdSkippableStart {
			return br
		}
		if _, err := br.Discard(8 + int(binary.LittleEndian.Uint32(h[4:]))); err != nil {
			return br
		}
	}
}

// isZlib says whether b starts with a zlib stream's header (RFC 1950):
// deflate with a window of at most 32 KiB, no preset dictionary, its
// check bits right (behind a prefix only the 32 KiB window's forms,
// 0x78, are looked for; see streamMagics). Python's zlib.decompress,
// zlib-flate, pigz -dz and openssl zlib unpack it, and so does bsdtar
// inside a XAR archive, whose files are zlib streams. Two bytes are a
// weak signature, so a file taken for one is scanned whole as bytes too,
// and a decoding error in it is no finding (see walkStream).
func isZlib(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && b[1]&0x20 == 0 && (int(b[0])<<8|int(b[1]))%31 == 0
}

// pastSkippable is b after the skippable frames it starts with, and
// whether it starts with one and they end within b.
func pastSkippable(b []byte) ([]byte, bool) {
	skipped := false
	for len(b) >= 8 && binary.LittleEndian.Uint32(b)&zstdSkippableMask == zstdSkippableStart {
		n := 8 + int(binary.LittleEndian.Uint32(b[4:]))
		if n > len(b) {
			return nil, false
		}
		b, skipped = b[n:], true
	}
	return b, skipped
}
