package scanner

import (
	"bufio"
	"cmp"
	"errors"
	"io"
)

// compress(1)'s .Z format, as gzip -d and uncompress read it: a header
// (1f 9d, then a flag byte: the most bits a code may have, 9 to 16, and
// block mode), then LZW codes of 9 bits at first, low bit first. Codes
// come in groups of eight, one code width long in bytes; when the width
// grows, or block mode's CLEAR code (256) empties the table, the rest of
// the group is skipped. Go's compress/lzw reads neither the groups nor
// CLEAR, so this is the decoder of ncompress and gzip's unlzw, written
// again. Its memory is fixed: the table of at most 65,536 entries, and
// one chain of them at a time.

const (
	lzwClear = 256
	lzwFirst = 257 // the first free entry in block mode
)

var errLZWCorrupt = errors.New("compress(1) stream: a code past the table")

// lzwReader decodes a .Z stream.
type lzwReader struct {
	r        *bufio.Reader
	maxBits  int
	maxMax   int // 1 << maxBits: entries are added while below it
	block    bool
	nBits    int
	maxCode  int
	freeEnt  int
	clearFlg bool
	group    [16 + 3]byte // one group of codes, and room to read past it
	offset   int          // bits of the group taken
	size     int          // bits of the group that hold whole codes
	prefix   []uint16
	suffix   []byte
	stack    []byte // a code's bytes, last first
	pending  []byte // decoded bytes not yet given out
	oldCode  int
	finChar  byte
	started  bool
	err      error
}

// newLZWReader reads the header of the .Z stream in br.
func newLZWReader(br *bufio.Reader) (*lzwReader, error) {
	var h [3]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, corruptError("read compress(1) header", noEOF(err))
	}
	if !isLZW(h[:]) {
		return nil, corruptError("read compress(1) header", errLZWCorrupt)
	}
	z := &lzwReader{r: br, maxBits: int(h[2] & 0x1f), block: h[2]&0x80 != 0, nBits: 9, maxCode: 511}
	z.maxMax = 1 << z.maxBits
	z.freeEnt = 256
	if z.block {
		z.freeEnt = lzwFirst
	}
	z.prefix = make([]uint16, max(z.maxMax, 512))
	z.suffix = make([]byte, max(z.maxMax, 512))
	for i := range 256 {
		z.suffix[i] = byte(i)
	}
	return z, nil
}

// code reads the next code, or -1 at the end of the stream.
func (z *lzwReader) code() (int, error) {
	if z.clearFlg || z.offset >= z.size || z.freeEnt > z.maxCode {
		// A new group: at a new width, after CLEAR, or the last one used.
		if z.freeEnt > z.maxCode {
			z.nBits++
			z.maxCode = 1<<z.nBits - 1
			if z.nBits == z.maxBits {
				z.maxCode = z.maxMax
			}
		}
		if z.clearFlg {
			z.nBits, z.maxCode, z.clearFlg = 9, 511, false
		}
		clear(z.group[:])
		n, err := io.ReadFull(z.r, z.group[:z.nBits])
		if n == 0 {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return -1, nil
			}
			return 0, err
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return 0, err
		}
		z.offset, z.size = 0, n*8-(z.nBits-1)
		if z.size <= 0 {
			return -1, nil
		}
	}
	i, shift := z.offset>>3, z.offset&7
	v := int(z.group[i]) | int(z.group[i+1])<<8 | int(z.group[i+2])<<16
	z.offset += z.nBits
	return v >> shift & (1<<z.nBits - 1), nil
}

// step decodes one code into pending, or sets err.
func (z *lzwReader) step() {
	c, err := z.code()
	switch {
	case err != nil:
		z.err = err
		return
	case c < 0:
		z.err = io.EOF
		return
	case !z.started:
		if c >= 256 {
			z.err = corruptError("compress(1) stream", errLZWCorrupt)
			return
		}
		z.started, z.oldCode, z.finChar = true, c, byte(c)
		z.pending = append(z.pending[:0], byte(c))
		return
	case c == lzwClear && z.block:
		clear(z.prefix[:256])
		z.clearFlg, z.freeEnt = true, lzwFirst-1
		if c, err = z.code(); err != nil || c < 0 {
			z.err = cmp.Or(err, io.EOF)
			return
		}
	}
	in := c
	z.stack = z.stack[:0]
	if c >= z.freeEnt {
		if c > z.freeEnt {
			z.err = corruptError("compress(1) stream", errLZWCorrupt)
			return
		}
		z.stack = append(z.stack, z.finChar) // the code being defined: KwKwK
		c = z.oldCode
	}
	for c >= 256 {
		z.stack = append(z.stack, z.suffix[c])
		c = int(z.prefix[c])
	}
	z.finChar = z.suffix[c]
	z.stack = append(z.stack, z.finChar)
	z.pending = z.pending[:0]
	for i := len(z.stack) - 1; i >= 0; i-- {
		z.pending = append(z.pending, z.stack[i])
	}
	if z.freeEnt < z.maxMax {
		z.prefix[z.freeEnt], z.suffix[z.freeEnt] = uint16(z.oldCode), z.finChar
		z.freeEnt++
	}
	z.oldCode = in
}

func (z *lzwReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(z.pending) == 0 {
			if z.err != nil {
				break
			}
			z.step()
			continue
		}
		k := copy(p[n:], z.pending)
		z.pending = z.pending[k:]
		n += k
	}
	if n > 0 {
		return n, nil
	}
	return 0, z.err
}
