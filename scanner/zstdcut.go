package scanner

import (
	"bufio"
	"encoding/binary"
	"io"
)

// zstd -d writes each block of a frame as it decodes it and checks the
// frame's checksum only at its end, so a frame whose checksum is wrong or
// cut off is written whole before zstd complains, and a pipe to a shell
// runs it. The Go decoder holds a frame's last block back until the
// checksum is read and matches. Inside a layer, where the host's own
// tools unpack a file, the checksum is therefore ignored
// (zstdNestedPool), and zstdChecksumFill supplies the checksum bytes of a
// frame that ends before them, so that pullgate reads what zstd writes.

// zstdChecksumFill passes r through, following its zstd frames; when r
// ends inside a frame's checksum, it gives zeros for the rest of it.
// Anything it does not take for a frame (other data after the frames, a
// header cut short) it passes through as it is, for the decoder to judge.
type zstdChecksumFill struct {
	br       *bufio.Reader
	left     int64 // bytes of the current part still to pass through
	next     zstdPart
	checksum bool // the current part is a frame's checksum
	hasSum   bool // the current frame ends with a checksum
	pad      int  // zeros still to give
	opaque   bool // the rest is passed through unparsed
}

type zstdPart int

const (
	zstdFrameStart zstdPart = iota
	zstdBlockHeader
	zstdChecksum
)

func newZstdChecksumFill(br *bufio.Reader) *zstdChecksumFill {
	return &zstdChecksumFill{br: br}
}

func (z *zstdChecksumFill) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		switch {
		case z.pad > 0:
			n := min(len(p), z.pad)
			clear(p[:n])
			z.pad -= n
			return n, nil
		case z.opaque:
			return z.br.Read(p)
		case z.left > 0:
			n, err := z.br.Read(p[:min(int64(len(p)), z.left)])
			z.left -= int64(n)
			if err == io.EOF && z.checksum {
				z.pad, z.left, z.opaque = int(z.left), 0, true
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
		default:
			if err := z.nextPart(); err != nil {
				return 0, err
			}
		}
	}
}

// nextPart reads the header of what comes next without taking it, and
// sets left to the whole part's length.
func (z *zstdChecksumFill) nextPart() error {
	z.checksum = false
	switch z.next {
	case zstdFrameStart:
		h, err := z.br.Peek(5)
		if len(h) == 0 && err == io.EOF {
			return io.EOF
		}
		if len(h) >= 4 && binary.LittleEndian.Uint32(h)&^0xf == 0x184d2a50 { // a skippable frame
			if h, _ = z.br.Peek(8); len(h) == 8 {
				z.left = 8 + int64(binary.LittleEndian.Uint32(h[4:]))
				return nil
			}
		}
		if len(h) < 5 || string(h[:4]) != string(zstdMagic) {
			z.opaque = true
			return nil
		}
		fhd := h[4]
		size := 5 + [4]int64{0, 2, 4, 8}[fhd>>6] + [4]int64{0, 1, 2, 4}[fhd&3]
		if fhd&0x20 == 0 { // a window descriptor
			size++
		} else if fhd>>6 == 0 { // one byte of content size
			size++
		}
		z.left, z.next, z.hasSum = size, zstdBlockHeader, fhd&4 != 0
	case zstdBlockHeader:
		h, _ := z.br.Peek(3)
		if len(h) < 3 {
			z.opaque = true
			return nil
		}
		v := int64(h[0]) | int64(h[1])<<8 | int64(h[2])<<16
		size := v >> 3
		switch (v >> 1) & 3 {
		case 1: // RLE: one byte, repeated
			size = 1
		case 3: // reserved: the decoder refuses it
			z.opaque = true
			return nil
		}
		z.left = 3 + size
		if v&1 != 0 { // the frame's last block
			z.next = zstdChecksum
		}
	case zstdChecksum:
		z.next = zstdFrameStart
		if z.hasSum {
			z.left, z.checksum = 4, true
		}
	}
	return nil
}
