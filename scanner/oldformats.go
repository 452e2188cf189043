package scanner

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/ulikunitz/xz/lzma"
)

// Two older single-file formats that hosts still unpack, found inside
// layers only (no client takes a layer in either): LZMA's own format
// (.lzma, lzma-alone: xz --format=lzma, unlzma, 7z) and compress(1)'s .Z
// (gzip -d and uncompress read it). Neither has a magic number of its
// own beyond a few header bytes, so the header is checked strictly.

// isLzmaAlone says whether b starts like an .lzma file as xz and the LZMA
// SDK write it: the default properties (lc=3, lp=0, pb=2: 0x5d; no tool
// writes others unless told to), a dictionary size of 2^n or 2^n+2^(n-1)
// from 4 KiB up, an uncompressed size that is unknown (all ones) or under
// 2^48, and the range coder's first byte, which is always zero. Kotlin's
// metadata files, among others, pass every test but the first.
func isLzmaAlone(b []byte) bool {
	if len(b) < 14 || b[0] != 0x5d || b[13] != 0 {
		return false
	}
	d := binary.LittleEndian.Uint32(b[1:5])
	if top := d >> bits.TrailingZeros32(d); d < 1<<12 || top != 1 && top != 3 {
		return false
	}
	size := binary.LittleEndian.Uint64(b[5:13])
	return size == ^uint64(0) || size < 1<<48
}

// isLZW says whether b starts with compress(1)'s header: 1f 9d and a flag
// byte of 9 to 16 bits per code, its reserved bits clear.
func isLZW(b []byte) bool {
	return len(b) >= 3 && b[0] == 0x1f && b[1] == 0x9d && b[2]&0x60 == 0 && b[2]&0x1f >= 9 && b[2]&0x1f <= 16
}

// nestedPeek is how many bytes nestedCompression looks at: an .lzma
// header's 13 and the first byte after it.
const nestedPeek = 14

// nestedCompression is detectCompression for a file inside a layer, which
// may also be in one of the older formats.
func nestedCompression(b []byte) compression {
	switch c := detectCompression(b); {
	case c != uncompressed:
		return c
	case isLzmaAlone(b):
		return compressedLzma
	case isLZW(b):
		return compressedLZW
	}
	return uncompressed
}

// decompressLzma decodes an .lzma file; its dictionary is bounded and
// charged as an xz stream's is.
func decompressLzma(br *bufio.Reader, charge func(int64) error) (io.Reader, error) {
	h, err := br.Peek(13)
	if err != nil {
		return nil, corruptError("read lzma header", err)
	}
	d := binary.LittleEndian.Uint32(h[1:5])
	if d > xzMaxDict {
		return nil, limitError("lzma stream needs a %d byte dictionary, more than %d", d, xzMaxDict)
	}
	if charge != nil {
		if err := charge(int64(max(d, lzma.MinDictCap))); err != nil {
			return nil, err
		}
	}
	lr, err := lzma.ReaderConfig{DictCap: xzMaxDict}.NewReader(br)
	if err != nil {
		return nil, corruptError("read lzma header", err)
	}
	return &toTheEnd{r: lr, br: br}, nil
}

// toTheEnd fails a stream whose decoder ended before its file did, as the
// other decoders do (see decompress): what follows was not decoded, so the
// file is reported unreadable and scanned whole as bytes.
type toTheEnd struct {
	r  io.Reader
	br *bufio.Reader
}

func (t *toTheEnd) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		if _, more := t.br.Peek(1); more == nil {
			return n, corruptError("read lzma stream", errors.New("bytes after the end of the stream"))
		}
	}
	return n, err
}

// errLZW: .Z files are refused, not read (see docs/detection.md).
var errLZW = fmt.Errorf("%w: compress(1) .Z (LZW), which gzip -d and uncompress unpack", errUnsupported)
