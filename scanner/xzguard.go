package scanner

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// xzGuard passes an xz stream to the decoder unchanged while following
// its container format (streams, block headers, LZMA2 chunk headers,
// index, footer, padding), so that every block header's dictionary size
// is checked (checkXzBlockHeader) before the decoder reads the block and
// allocates the dictionary. It only reads sizes the format states; it
// never decodes. Bytes it cannot follow, and a stream that ends anywhere
// but after a stream footer, are refused as corrupt.
type xzGuard struct {
	r      io.Reader
	state  xzState
	err    error
	charge func(int64) error // if not nil, told each LZMA2 block's dictionary before the decoder allocates it
	// cutUnread refuses a stream cut inside an LZMA2 chunk as unreadable
	// (a file inside a layer, which xz -d unpacks as far as it goes).
	cutUnread bool

	want  int    // bytes to collect into hdr, or to skip
	hdr   []byte // the header being collected
	check int    // size of the check field of the current stream's blocks
	block int64  // bytes of the current block so far (header and data)
	index int64  // bytes of the current index so far
	ints  uint64 // the index's record count, then its varints left to read
	shift uint   // of the record count varint
}

type xzState int

const (
	xzStreamHeader xzState = iota // collecting the 12-byte stream header
	xzBlockStart                  // at a block header size byte or the index indicator
	xzBlockHeader                 // collecting the rest of a block header
	xzChunk                       // at an LZMA2 chunk control byte
	xzChunkHeader                 // collecting an LZMA2 chunk header
	xzSkipData                    // skipping chunk data, then xzChunk
	xzSkipCheck                   // skipping block padding and check, then xzBlockStart
	xzIndexCount                  // reading the index's record count
	xzIndexRecords                // reading the records' varints
	xzSkipIndexEnd                // skipping index padding, CRC and the stream footer
	xzStreamEnd                   // at stream padding or the next stream
	xzLost                        // not followed any more
)

func newXzGuard(r io.Reader) *xzGuard {
	g := &xzGuard{r: r}
	g.collect(12, xzStreamHeader)
	return g
}

func (g *xzGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if cerr := g.follow(p[:n]); cerr != nil {
		g.err = cerr
		return 0, cerr
	}
	if g.state == xzLost {
		g.err = corruptError("read xz stream", errXzUnfollowed)
		return 0, g.err
	}
	if err == io.EOF && g.cutUnread && (g.state == xzSkipData || g.state == xzChunkHeader) {
		// Cut inside an LZMA2 chunk: xz -d writes what it decoded of
		// the chunk before it complains, where the Go decoder gives
		// nothing of a chunk it cannot finish. What the host gets is
		// not read, so the stream is refused as unreadable.
		g.err = unsupportedError("xz stream cut inside its compressed data, which xz unpacks up to the cut")
		return n, g.err
	}
	if err == io.EOF && g.state != xzStreamEnd {
		// The decoder takes a stream cut after a header for a whole one;
		// xz does not, nor does the scanner.
		g.err = corruptError("read xz stream", io.ErrUnexpectedEOF)
		return n, g.err
	}
	return n, err
}

var errXzUnfollowed = errors.New("not a well-formed xz container")

func (g *xzGuard) collect(want int, next xzState) {
	g.hdr, g.want, g.state = g.hdr[:0], want, next
}

func (g *xzGuard) skip(n int64, next xzState) {
	g.want, g.state = int(n), next
	if n > int64(1<<31) {
		g.state = xzLost
	}
}

// follow advances the parser over b.
func (g *xzGuard) follow(b []byte) error {
	for len(b) > 0 {
		var err error
		switch g.state {
		case xzLost:
			return nil
		case xzStreamHeader, xzBlockHeader, xzChunkHeader:
			b, err = g.followHeader(b)
		case xzSkipData, xzSkipCheck, xzSkipIndexEnd:
			b = g.followSkip(b)
		case xzBlockStart:
			b = g.followBlockStart(b)
		case xzChunk:
			b = g.followChunk(b)
		case xzIndexCount, xzIndexRecords:
			b = g.followIndex(b)
		case xzStreamEnd:
			if b[0] == 0 { // stream padding
				b = b[1:]
				continue
			}
			g.collect(12, xzStreamHeader)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// followHeader collects the bytes of a header and acts on it once whole.
// Each follow step returns what is left of b.
func (g *xzGuard) followHeader(b []byte) ([]byte, error) {
	take := min(g.want-len(g.hdr), len(b))
	g.hdr = append(g.hdr, b[:take]...)
	b = b[take:]
	if len(g.hdr) < g.want {
		return b, nil
	}
	return b, g.headerDone()
}

// followSkip passes over bytes the guard need not read.
func (g *xzGuard) followSkip(b []byte) []byte {
	take := min(g.want, len(b))
	g.want -= take
	b = b[take:]
	if g.want > 0 {
		return b
	}
	switch g.state {
	case xzSkipData:
		g.state = xzChunk
	case xzSkipCheck:
		g.state = xzBlockStart
	case xzSkipIndexEnd:
		g.state = xzStreamEnd
	}
	return b
}

// followBlockStart reads what starts a block: a block header, or the
// index that ends the stream's blocks.
func (g *xzGuard) followBlockStart(b []byte) []byte {
	c := b[0]
	if c == 0 { // index indicator
		g.index, g.ints, g.shift = 1, 0, 0
		g.state = xzIndexCount
		return b[1:]
	}
	g.collect((int(c)+1)*4, xzBlockHeader)
	return b
}

// followChunk reads the control byte of an LZMA2 chunk.
func (g *xzGuard) followChunk(b []byte) []byte {
	c := b[0]
	switch {
	case c == 0: // end of the LZMA2 data
		b = b[1:]
		g.block++
		g.skip((4-g.block%4)%4+int64(g.check), xzSkipCheck)
	case c == 1 || c == 2: // uncompressed chunk: control, 2 bytes size
		g.collect(3, xzChunkHeader)
	case c >= 0x80: // LZMA chunk: control, 2+2 bytes sizes, props byte on reset
		n := 5
		if (c>>5)&3 >= 2 {
			n = 6
		}
		g.collect(n, xzChunkHeader)
	default:
		g.state = xzLost
	}
	return b
}

// followIndex reads one byte of the index: its record count, then the
// records' varints, counted down to the index's end.
func (g *xzGuard) followIndex(b []byte) []byte {
	c := b[0]
	b = b[1:]
	g.index++
	if g.state == xzIndexCount {
		if g.shift > 56 {
			g.state = xzLost
			return b
		}
		g.ints |= uint64(c&0x7f) << g.shift
		g.shift += 7
		if c&0x80 != 0 {
			return b
		}
		if g.ints > 1<<40 {
			g.state = xzLost
			return b
		}
		g.ints *= 2 // two varints a record
		g.state = xzIndexRecords
	} else if c&0x80 == 0 {
		g.ints--
	}
	if g.ints == 0 {
		// Index padding, its CRC32, then the stream footer.
		g.skip((4-g.index%4)%4+4+12, xzSkipIndexEnd)
	}
	return b
}

// headerDone acts on a collected header.
func (g *xzGuard) headerDone() error {
	h := g.hdr
	switch g.state {
	case xzStreamHeader:
		if string(h[:6]) != string(xzMagic) {
			g.state = xzLost
			return nil
		}
		switch id := h[7] & 0x0f; {
		case id == 0, id == 1, id == 4, id == 10: // none, CRC32, CRC64, SHA-256
		case crc32.ChecksumIEEE(h[6:8]) == binary.LittleEndian.Uint32(h[8:12]):
			// xz unpacks a stream whose check it does not know, without
			// verifying it; the Go decoder refuses it. (Bytes that only
			// start like a header, as programs that handle xz carry, fail
			// the header's own CRC-32 and are refused as corrupt.)
			return unsupportedError("xz stream with an integrity check of type %d, which xz unpacks without checking it", id)
		}
		g.check = xzCheckSize(h[7] & 0x0f)
		g.state = xzBlockStart
	case xzBlockHeader:
		dict, err := checkXzBlockHeader(h)
		if err != nil {
			return err
		}
		if g.charge != nil && dict > 0 {
			if err := g.charge(dict); err != nil {
				return err
			}
		}
		g.block = int64(len(h))
		g.state = xzChunk
	case xzChunkHeader:
		g.block += int64(len(h))
		var n int64
		if h[0] < 0x80 {
			n = int64(binary.BigEndian.Uint16(h[1:3])) + 1
		} else {
			n = int64(binary.BigEndian.Uint16(h[3:5])) + 1
		}
		g.block += n
		g.skip(n, xzSkipData)
	}
	return nil
}

// xzCheckSize is the size of a block's check field for a check type.
func xzCheckSize(t byte) int {
	switch {
	case t == 0:
		return 0
	case t <= 3:
		return 4
	case t <= 6:
		return 8
	case t <= 9:
		return 16
	case t <= 12:
		return 32
	}
	return 64
}
