package scanner

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/pullgate/pullgate/internal/isal"
)

// compression is how a blob is compressed, detected from its first bytes
// exactly as the clients that unpack layers detect it: moby's
// archive.DecompressStream (Docker Engine) knows bzip2, gzip, xz and zstd,
// containerd's compression.DecompressStream gzip and zstd, with the same
// magic bytes. Whatever matches none of them is taken as uncompressed by
// both, and so by the scanner.
type compression int

const (
	uncompressed compression = iota
	compressedBzip2
	compressedGzip
	compressedXz
	compressedZstd
	compressedLzma // inside layers only (see nestedCompression)
	compressedLZW  // inside layers only
	compressedLZ4  // inside layers only
	compressedLzip // inside layers only, refused
	compressedZlib // inside layers only (see isZlib)
	compressedPack // inside layers only (see isPack)
)

func (c compression) String() string {
	return [...]string{"uncompressed", "bzip2", "gzip", "xz", "zstd", "lzma", "compress", "lz4", "lzip", "zlib", "pack"}[c]
}

// The magic bytes moby and containerd check; gzip includes its only
// method byte (deflate), so 1f 8b followed by anything else is, for the
// clients, the start of an uncompressed tar.
var (
	bzip2Magic = []byte{0x42, 0x5a, 0x68} // "BZh"
	gzipMagic  = []byte{0x1f, 0x8b, 0x08}
	// gzipOldMagic starts a gzip member as gzip 0.5 wrote it: gzip -d
	// still reads it (see isal's oldMagic), Go and moby do not, so a
	// layer is never taken for one.
	gzipOldMagic = []byte{0x1f, 0x9e, 0x08}
	xzMagic      = []byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}
	zstdMagic    = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// zstd skippable frames (magic 0x184D2A50 to 0x184D2A5F) may start a
// zstd stream; containerd and moby both take them as zstd.
const (
	zstdSkippableStart = 0x184d2a50
	zstdSkippableMask  = 0xfffffff0
)

// detectPeek is how many bytes detection looks at (moby peeks 10).
const detectPeek = 10

// detectCompression says how a blob starting with b is compressed, in
// moby's order of checks.
func detectCompression(b []byte) compression {
	switch {
	case bytes.HasPrefix(b, bzip2Magic):
		return compressedBzip2
	case bytes.HasPrefix(b, gzipMagic):
		return compressedGzip
	case bytes.HasPrefix(b, xzMagic):
		return compressedXz
	case bytes.HasPrefix(b, zstdMagic),
		len(b) >= 8 && binary.LittleEndian.Uint32(b)&zstdSkippableMask == zstdSkippableStart:
		return compressedZstd
	}
	return uncompressed
}

// zstdMaxWindow bounds the memory a zstd stream may make the decoder hold.
// Layers compressed with a larger window (zstd --long=27 and up) are
// refused with ErrLimit rather than allowed to pin that much memory.
const zstdMaxWindow = 64 << 20

// xzMaxDict bounds the LZMA2 dictionary an xz stream may ask for: the
// decoder allocates the dictionary the stream header names. xz -9 uses
// 64 MiB; larger dictionaries are refused with ErrLimit.
const xzMaxDict = 64 << 20

// zstdPool holds the decoders of layers, which check every frame's
// checksum as containerd's and moby's do; zstdNestedPool those of files
// inside a layer, which do not, as zstd -d writes a frame before it
// checks it (see zstdChecksumFill).
var zstdPool, zstdNestedPool = zstdDecoders(false), zstdDecoders(true)

// gzipPool and zlibPool hold decoders reset onto each stream: a candidate
// stream behind a file's start is tried by decoding its first bytes, and
// setting a decoder up cost more than the trial (8 µs for ISA-L's C
// memory, 22 µs for zlib's tables). A pooled ISA-L reader's C memory is
// freed by its cleanup when the pool drops it.
var gzipPool, zlibPool sync.Pool

func gzipReader(br *bufio.Reader) (*isal.Reader, error) {
	if zr, ok := gzipPool.Get().(*isal.Reader); ok {
		return zr, zr.Reset(br)
	}
	return isal.NewReader(br)
}

func zlibReader(br *bufio.Reader) (io.Reader, error) {
	if zr, ok := zlibPool.Get().(io.Reader); ok {
		if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
			zlibPool.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return zlib.NewReader(br)
}

func zstdDecoders(ignoreChecksum bool) sync.Pool {
	return sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1), // decode in the walker's goroutine
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.IgnoreChecksum(ignoreChecksum),
		)
		if err != nil {
			panic(fmt.Sprintf("zstd decoder options: %v", err))
		}
		return d
	}}
}

// decompressTrial is decompress for a candidate's trial, which decodes
// its first streamTrial bytes: an .lzma stream is charged no more
// dictionary than that touches.
func decompressTrial(c compression, br *bufio.Reader, charge func(int64) error) (io.Reader, func(), error) {
	if c != compressedLzma {
		return decompress(c, br, charge)
	}
	return decompressLzma(br, charge, lzmaTrialDict)
}

// decompress returns the decompressed stream of br and a function that
// releases the decoder. Every decoder reads br to the end of its own
// format and fails on trailing bytes that are not another stream of it,
// so reading to EOF verifies every checksum.
//
// charge, if not nil, is told what a bzip2 or xz decoder allocates to
// set up each stream or block (see walker.chargeDecoder), before it does;
// it is set for the files inside a layer, not for the layer itself.
func decompress(c compression, br *bufio.Reader, charge func(int64) error) (io.Reader, func(), error) {
	switch c {
	case compressedGzip:
		// ISA-L inflates about three times as fast as Go on one core,
		// and inflating is most of a cold pull's CPU.
		zr, err := gzipReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() {
			zr.Reset(nil)
			gzipPool.Put(zr)
		}, nil
	case compressedZstd:
		pool, src := &zstdPool, io.Reader(br)
		if charge != nil { // a file inside a layer
			pool, src = &zstdNestedPool, newZstdChecksumFill(br)
		}
		zr := pool.Get().(*zstd.Decoder)
		if err := zr.Reset(src); err != nil {
			pool.Put(zr)
			if errors.Is(err, zstd.ErrUnknownDictionary) {
				return nil, nil, unsupportedError("zstd frame made with a dictionary (zstd -D), which zstd unpacks given the dictionary")
			}
			return nil, nil, corruptError("read zstd header", err)
		}
		return zr, func() {
			zr.Reset(nil)
			pool.Put(zr)
		}, nil
	case compressedBzip2:
		// compress/bzip2 reads concatenated streams as one, as moby does
		// with the same package; its memory is bounded by the format
		// (900 kB blocks).
		if err := chargeBzip2(br, charge); err != nil {
			return nil, nil, err
		}
		return bzip2.NewReader(br), func() {}, nil
	case compressedLzma:
		return decompressLzma(br, charge, 0)
	case compressedPack:
		zr, err := newPackReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() {}, nil
	case compressedLZW:
		zr, err := newLZWReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() {}, nil
	case compressedLZ4:
		zr, release, err := newLZ4Reader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, release, nil
	case compressedZlib:
		zr, err := zlibReader(br)
		if err != nil {
			return nil, nil, corruptError("read zlib header", err)
		}
		return zr, func() { zlibPool.Put(zr) }, nil
	case compressedLzip:
		return nil, nil, errLzip
	case compressedXz:
		g := newXzGuard(br)
		g.charge, g.cutUnread = charge, charge != nil
		xr, err := xz.NewReader(g)
		if err != nil {
			return nil, nil, corruptError("read xz header", err)
		}
		return xr, func() {}, nil
	}
	return br, func() {}, nil
}

// checkXzBlockHeader checks the LZMA2 dictionary size in a whole xz
// block header b. A header it cannot parse is left to the decoder, which
// refuses it.
func checkXzBlockHeader(b []byte) (dict int64, err error) {
	if len(b) == 0 || b[0] == 0 { // index indicator: no block
		return 0, nil
	}
	size := (int(b[0]) + 1) * 4
	if len(b) < size {
		return 0, nil
	}
	h := b[1:size]
	flags := h[0]
	nfilters := int(flags&0x03) + 1
	i := 1
	varint := func() (uint64, bool) {
		v, n := binary.Uvarint(h[i:])
		if n <= 0 {
			return 0, false
		}
		i += n
		return v, true
	}
	if flags&0x40 != 0 { // compressed size present
		if _, ok := varint(); !ok {
			return 0, nil
		}
	}
	if flags&0x80 != 0 { // uncompressed size present
		if _, ok := varint(); !ok {
			return 0, nil
		}
	}
	for range nfilters {
		id, ok := varint()
		if !ok {
			return 0, nil
		}
		n, ok := varint()
		if !ok || n > uint64(len(h)-i) {
			return 0, nil
		}
		props := h[i : i+int(n)]
		i += int(n)
		if id == 0x21 && len(props) == 1 { // LZMA2
			if d := xzDictSize(props[0]); d > xzMaxDict {
				return 0, limitError("xz stream needs a %d byte dictionary, more than %d", d, xzMaxDict)
			} else {
				dict = int64(d)
			}
		}
		if name, ok := xzFilters[id]; ok {
			// The decoder knows LZMA2 alone; xz, bsdtar and tar J
			// unpack these.
			return 0, unsupportedError("xz stream with the %s filter, which xz and bsdtar unpack", name)
		}
	}
	return dict, nil
}

// chargeBzip2 tells charge what compress/bzip2 allocates for the stream
// br starts: a 4-byte entry per byte of its blocks' size ("BZh1" to
// "BZh9": 100 to 900 kB).
func chargeBzip2(br *bufio.Reader, charge func(int64) error) error {
	if charge == nil {
		return nil
	}
	level := int64(9)
	if h, err := br.Peek(4); err == nil && h[3] >= '1' && h[3] <= '9' {
		level = int64(h[3] - '0')
	}
	return charge(level * 100_000 * 4)
}

// xzFilters names the xz filters besides LZMA2 that liblzma decodes: the
// branch converters for executables (BCJ) and delta.
var xzFilters = map[uint64]string{
	0x03: "delta", 0x04: "x86 BCJ", 0x05: "PowerPC BCJ", 0x06: "IA-64 BCJ", 0x07: "ARM BCJ",
	0x08: "ARM-Thumb BCJ", 0x09: "SPARC BCJ", 0x0a: "ARM64 BCJ", 0x0b: "RISC-V BCJ",
}

// xzDictSize decodes an LZMA2 dictionary size byte.
func xzDictSize(p byte) int64 {
	if p > 40 {
		return 1 << 40 // invalid; the decoder refuses it
	}
	if p == 40 {
		return 1<<32 - 1
	}
	return int64(2|p&1) << (p/2 + 11)
}

// streamStart says whether head starts a compressed stream the scanner
// decodes, by its magic bytes (whatever else it may also be: a tar header
// can start with a gzip header, outside attack round 20).
func streamStart(head []byte) bool {
	switch {
	case len(head) < 4:
		return false
	case isLzmaAlone(head), isLZW(head), isLZ4(head), isLzip(head), isZlib(head), isPack(head), isOldGzip(head):
		return true
	}
	switch detectCompression(head) {
	case compressedBzip2:
		return len(head) >= 10 && head[3] >= '1' && head[3] <= '9' &&
			(bytes.Equal(head[4:10], bzip2Block) || bytes.Equal(head[4:10], bzip2End))
	case compressedGzip, compressedXz, compressedZstd:
		return true
	}
	return false
}
