package scanner

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/bits"
)

// lz4WithoutDictID gives br with its first LZ4 frame's header rewritten
// to name no dictionary, when the header names one and its own checksum
// holds. lz4 -d unpacks such a frame (its blocks may need no dictionary),
// where the Go decoder refuses the flag; blocks that do need one fail to
// decode either way. Anything else is given unchanged.
func lz4WithoutDictID(br *bufio.Reader) io.Reader {
	h, _ := br.Peek(19) // magic, FLG, BD, content size, dictionary ID, HC
	if len(h) < 7 || binary.LittleEndian.Uint32(h) != 0x184d2204 || h[4]&1 == 0 {
		return br
	}
	n := 6 // the descriptor's end: FLG, BD
	if h[4]&8 != 0 {
		n += 8 // content size
	}
	n += 4 // dictionary ID
	if len(h) < n+1 || byte(xxh32(h[4:n])>>8) != h[n] {
		return br
	}
	head := append(bytes.Clone(h[:n-4]), 0)
	head[4] &^= 1
	head[len(head)-1] = byte(xxh32(head[4:len(head)-1]) >> 8)
	br.Discard(n + 1)
	return io.MultiReader(bytes.NewReader(head), br)
}

// xxh32 is XXH32 with seed 0 of a short b (under 16 bytes), as an LZ4
// frame's header checksum takes it.
func xxh32(b []byte) uint32 {
	const p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
	h := uint32(p5) + uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		h += binary.LittleEndian.Uint32(b) * p3
		h = bits.RotateLeft32(h, 17) * p4
	}
	for _, c := range b {
		h += uint32(c) * p5
		h = bits.RotateLeft32(h, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}
