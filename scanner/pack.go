package scanner

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pack(1), System V's Huffman coder, whose files gzip -d, gunzip and zcat
// still unpack (gzip's unpack.c): a miner in one passed version 14 as a
// file, behind a script (tail -c | gzip -dc) and in a .tar.gz (outside
// attack round 21, F2). The header: the magic, the output's length (four
// bytes, most significant first), the longest code's length (1 to 25),
// the number of leaves of each length (the last one less 2), then the
// leaves' bytes in that order; codes follow, most significant bit first,
// and end with the end-of-block code, the last of the longest.
var packMagic = []byte{0x1f, 0x1e}

const packMaxBits = 25

// packTree is a pack header's code: at each length, the codes below
// parents are internal nodes and the rest leaves, whose bytes start at
// literal[base].
type packTree struct {
	maxLen  int
	parents [packMaxBits + 1]int
	leaves  [packMaxBits + 1]int
	base    [packMaxBits + 1]int
	literal []byte
	eob     int // the end-of-block code, of maxLen bits
}

// parsePackTree reads a header from b (after the magic and length),
// checking it as unpack.c does; n is how many bytes it took.
func parsePackTree(b []byte) (t packTree, n int, err error) {
	if len(b) < 1 {
		return t, 0, io.ErrUnexpectedEOF
	}
	t.maxLen = int(b[0])
	if t.maxLen < 1 || t.maxLen > packMaxBits {
		return t, 0, errors.New("the longest code's length is out of range")
	}
	if len(b) < 1+t.maxLen {
		return t, 0, io.ErrUnexpectedEOF
	}
	maxLeaves, total := 1, 0
	for l := 1; l <= t.maxLen; l++ {
		t.leaves[l] = int(b[l])
		last := 0
		if l == t.maxLen {
			last = 1
		}
		if maxLeaves-last < t.leaves[l] {
			return t, 0, errors.New("too many leaves in Huffman tree")
		}
		maxLeaves = (maxLeaves-t.leaves[l]+1)*2 - 1
		total += t.leaves[l]
	}
	if total >= 256 {
		return t, 0, errors.New("too many leaves in Huffman tree")
	}
	t.leaves[t.maxLen]++ // the header counts the last length's less one literal
	n = 1 + t.maxLen
	for l := 1; l <= t.maxLen; l++ {
		t.base[l] = len(t.literal)
		if len(b) < n+t.leaves[l] {
			return t, 0, io.ErrUnexpectedEOF
		}
		t.literal = append(t.literal, b[n:n+t.leaves[l]]...)
		n += t.leaves[l]
	}
	t.leaves[t.maxLen]++ // and the end-of-block code
	nodes := 0
	for l := t.maxLen; l >= 1; l-- {
		nodes >>= 1
		t.parents[l] = nodes
		t.base[l] -= nodes
		nodes += t.leaves[l]
	}
	if nodes>>1 != 1 {
		return t, 0, errors.New("too few leaves in Huffman tree")
	}
	t.eob = t.leaves[t.maxLen] - 1
	return t, n, nil
}

// isPack says whether b starts with a pack header unpack.c accepts.
func isPack(b []byte) bool {
	if len(b) < 8 || !isPackMagic(b) {
		return false
	}
	_, _, err := parsePackTree(b[6:min(len(b), 6+1+packMaxBits+256)])
	return err == nil
}

// packReader decodes one pack file. What it decoded is given out before
// an error, as gzip writes it before it complains; a length that differs
// from the header's is an error after the whole output, as gzip's.
type packReader struct {
	br *bufio.Reader
	// joined ends the stream with io.EOF at a member's end that another
	// format follows (see joinedReader), where gzip -d goes on to it.
	joined bool
	t      packTree
	want   uint32
	out    uint32
	bits   uint32 // bits not yet used, the next in nbits' top
	nbits  int
	err    error
}

func newPackReader(br *bufio.Reader) (io.Reader, error) {
	r := &packReader{br: br}
	if err := r.header(); err != nil {
		return nil, err
	}
	return r, nil
}

// header reads a member's header.
func (r *packReader) header() error {
	h, err := r.br.Peek(6 + 1 + packMaxBits + 256)
	if len(h) < 7 || h[0] != packMagic[0] || h[1] != packMagic[1] {
		if err == nil {
			err = errors.New("not a pack header")
		}
		return corruptError("read pack header", err)
	}
	t, n, err := parsePackTree(h[6:])
	if err != nil {
		return corruptError("read pack header", err)
	}
	r.t, r.want, r.out, r.nbits = t, binary.BigEndian.Uint32(h[2:6]), 0, 0
	_, err = r.br.Discard(6 + n)
	return err
}

// next ends a member at its end-of-block code: its length must be the
// header's, and another member may follow, as gzip -d reads them.
func (r *packReader) next() error {
	if r.out != r.want {
		return corruptError("read pack stream", fmt.Errorf("%d bytes, the header says %d", r.out, r.want))
	}
	h, _ := r.br.Peek(len(packMagic))
	switch {
	case len(h) == 0:
		return io.EOF
	case isPackMagic(h):
		return r.header()
	case r.joined:
		return io.EOF
	}
	return corruptError("read pack stream", errAfterTheEnd)
}

func isPackMagic(h []byte) bool {
	return len(h) >= 2 && h[0] == packMagic[0] && h[1] == packMagic[1]
}

// bit is the next bit of the stream, most significant first.
func (r *packReader) bit() (int, error) {
	if r.nbits == 0 {
		c, err := r.br.ReadByte()
		if err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		r.bits, r.nbits = uint32(c), 8
	}
	r.nbits--
	return int(r.bits>>r.nbits) & 1, nil
}

func (r *packReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.err == nil {
		code, l := 0, 0
		for r.err == nil {
			b, err := r.bit()
			if err != nil {
				r.err = corruptError("read pack stream", err)
				break
			}
			code, l = code<<1|b, l+1
			if code >= r.t.parents[l] {
				break // a leaf of l bits; every code of the longest length is one
			}
		}
		if r.err != nil {
			break
		}
		if l == r.t.maxLen && code == r.t.eob {
			r.err = r.next()
			continue
		}
		i := code + r.t.base[l]
		if i < 0 || i >= len(r.t.literal) {
			r.err = corruptError("read pack stream", errors.New("a code outside the tree"))
			break
		}
		p[n] = r.t.literal[i]
		n++
		r.out++
	}
	if n > 0 {
		return n, nil
	}
	return 0, r.err
}
