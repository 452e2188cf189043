package scanner

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"io"

	"github.com/pullgate/pullgate/internal/isal"
	"github.com/pullgate/pullgate/internal/liblzma"
	"github.com/ulikunitz/xz/lzma"
)

// zstd -dc reads a file frame by frame and switches format at each one
// (programs/fileio.c, FIO_decompressFrames): zstd frames (skippable ones
// passed over), gzip members, .xz streams, .lzma streams and LZ4 frames,
// in any order, their outputs written one after the other. gzip -dc does
// the same with its formats (gzip.c, treat_file): gzip members, pack(1)
// members and a compress(1) stream, which runs to the file's end. A miner
// cut into slices, each in a frame of another format, is whole only in
// that output: each stream read on its own holds a slice that no rule
// matches (outside attack round 21, F1). A file whose own stream is not
// read to its end is therefore read once more as each tool reads it, and
// when that meets more than one format, what it writes is scanned as one
// more file, "x!zstd -dc" or "x!gzip -dc".

// joinTool is a host tool that joins frames of several formats: its name
// and the format of the frame a file's bytes start, as it tells them
// apart, uncompressed where it stops.
type joinTool struct {
	name   string
	format func(h []byte) compression
}

var joinTools = []joinTool{{"zstd -dc", zstdFrameFormat}, {"gzip -dc", gzipMemberFormat}}

// gzipMemberFormat is the format of the member h starts, as gzip -d
// tells them apart (get_method). gzip's LZH method is refused (see
// foreignArchives).
func gzipMemberFormat(h []byte) compression {
	switch {
	case len(h) < 2 || h[0] != 0x1f:
		return uncompressed
	case h[1] == 0x8b, h[1] == 0x9e:
		return compressedGzip
	case h[1] == 0x1e:
		return compressedPack
	case h[1] == 0x9d:
		return compressedLZW
	case h[1] == 0xa0:
		return compressedLzip // refused, as lzip is: see next
	}
	return uncompressed
}

// zstdFrameFormat is the format of the frame h starts with, as zstd -dc
// tells them apart, or uncompressed where it stops.
func zstdFrameFormat(h []byte) compression {
	switch {
	case len(h) < 4:
		return uncompressed
	case binary.LittleEndian.Uint32(h) == 0xFD2FB528,
		binary.LittleEndian.Uint32(h)&zstdSkippableMask == zstdSkippableStart:
		return compressedZstd
	case h[0] == 0x1f && h[1] == 0x8b:
		return compressedGzip
	case h[0] == 0xfd && h[1] == 0x37:
		return compressedXz
	case h[0] == 0x5d && h[1] == 0:
		return compressedLzma
	case binary.LittleEndian.Uint32(h) == lz4FrameMagic:
		return compressedLZ4
	}
	return uncompressed
}

// lz4FrameMagic starts an LZ4 frame (lz4's default format).
const lz4FrameMagic = 0x184D2204

// lz4FrameLen is the length of the LZ4 frame data starts with, from its
// header and its blocks' sizes (the LZ4 frame format, 1.6), and whether
// data holds it whole.
func lz4FrameLen(data []byte) (int, bool) {
	if len(data) < 7 {
		return 0, false
	}
	flg := data[4]
	n := 7 // magic, FLG, BD, header checksum
	if flg&0x08 != 0 {
		n += 8 // content size
	}
	if flg&0x01 != 0 {
		n += 4 // dictionary ID
	}
	for {
		if n+4 > len(data) {
			return 0, false
		}
		size := int64(binary.LittleEndian.Uint32(data[n:]) & 0x7fffffff)
		n += 4
		if size == 0 { // the end mark
			break
		}
		if flg&0x10 != 0 {
			size += 4 // block checksum
		}
		if int64(n)+size > int64(len(data)) {
			return 0, false
		}
		n += int(size)
	}
	if flg&0x04 != 0 {
		n += 4 // content checksum
	}
	return n, n <= len(data)
}

// joinedReader gives what tool writes of data: each frame's output in
// turn, to the end of data or to the first bytes that start no frame the
// tool reads (it stops there). formats counts the formats met.
type joinedReader struct {
	w       *walker
	tool    joinTool
	data    []byte
	off     int       // where the current frame starts
	cur     io.Reader // its decoder; nil between frames
	end     func() int
	release func()
	seen    [compressedPack + 1]bool
	formats int
	// base is where data starts in its file, and at, if not nil, is
	// told where each frame read starts in it (see walkJoined).
	base int64
	at   map[int64]bool
}

func (j *joinedReader) Read(p []byte) (int, error) {
	for {
		if j.cur == nil {
			if err := j.next(); err != nil {
				return 0, err
			}
		}
		n, err := j.cur.Read(p)
		if err == io.EOF {
			end := j.end()
			j.close()
			if end <= j.off { // a frame is never empty: its header at least
				return n, corruptError("read "+j.tool.name, errors.New("a frame that ends where it starts"))
			}
			j.off = end
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// next sets up the decoder of the frame at j.off, and its end once read.
func (j *joinedReader) next() error {
	rest := j.data[j.off:]
	c := j.tool.format(rest)
	switch c {
	case uncompressed:
		return io.EOF
	case compressedLzip:
		return unsupportedError("a member of gzip's LZH method, which gzip -d unpacks")
	}
	if !j.seen[c] {
		j.seen[c] = true
		j.formats++
	}
	if j.at != nil {
		j.at[j.base+int64(j.off)] = true
	}
	// Each decoder reads from src, which it is given whole or which is
	// cut to the frame's length: end is where its frame ended.
	src := bytes.NewReader(rest)
	br := bufio.NewReader(src)
	j.end = func() int { return j.off + len(rest) - src.Len() - br.Buffered() }
	j.release = func() {}
	switch c {
	case compressedZstd, compressedLZ4:
		n, _ := lz4FrameLen(rest)
		if c == compressedZstd {
			n = zstdFrames(rest, func(off int, _ bool) {
				if j.at != nil {
					j.at[j.base+int64(j.off+off)] = true
				}
			})
		}
		if n == 0 {
			n = len(rest) // read as far as it goes: its error ends the output
		}
		cut := j.off + n
		j.end = func() int { return cut }
		body, release, err := decompress(c, bufio.NewReader(bytes.NewReader(rest[:n])), j.w.chargeDecoder)
		if err != nil {
			return err
		}
		j.cur, j.release = body, release
	case compressedGzip:
		// One member, read byte by byte, so that it is left where the
		// member ends, as zlib's inflate does for zstd -dc; gzip 0.5's
		// magic read as gzip's (see gzipOldMagic).
		m, err := newGzipMember(rest)
		if err != nil {
			return err
		}
		j.end = func() int { return j.off + m.at() }
		j.cur = m
	case compressedPack:
		pr, err := newPackReader(br)
		if err != nil {
			return err
		}
		pr.(*packReader).joined = true
		j.cur = pr
	case compressedLZW: // to the file's end
		zr, err := newLZWReader(br)
		if err != nil {
			return err
		}
		j.cur = zr
	case compressedXz, compressedLzma:
		// As decompressLzma sets an .lzma stream up, but read to its end
		// only: what follows is the next frame.
		open, dict := func(br *bufio.Reader) (*liblzma.Reader, error) { return liblzma.NewXzReader(br, lzmaMemLimit) }, int64(lzma.MinDictCap)
		if c == compressedLzma {
			open = func(br *bufio.Reader) (*liblzma.Reader, error) { return liblzma.NewCappedReader(br, xzMaxDict) }
			if len(rest) >= 5 {
				dict = max(dict, int64(min(binary.LittleEndian.Uint32(rest[1:5]), xzMaxDict)))
			}
		} else if len(rest) > 12 && 12+(int(rest[12])+1)*4 <= len(rest) {
			d, _ := checkXzBlockHeader(rest[12 : 12+(int(rest[12])+1)*4])
			dict = max(dict, d)
		}
		if dict > xzMaxDict {
			return limitError("%s stream needs a %d byte dictionary, more than %d", c, dict, xzMaxDict)
		}
		if err := j.w.chargeDecoder(dict); err != nil {
			return err
		}
		lr, err := open(br)
		if err != nil {
			return corruptError("read "+c.String()+" header", err)
		}
		j.cur, j.release = liblzmaErrors{lr}, lr.Close
	}
	return nil
}

// liblzmaErrors gives liblzma's errors the scanner's meaning, as
// toTheEnd does.
type liblzmaErrors struct{ r io.Reader }

func (l liblzmaErrors) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, liblzma.ErrMemLimit), errors.Is(err, liblzma.ErrDictCap):
		err = limitError("%v", err)
	default:
		err = corruptError("read lzma stream", err)
	}
	return n, err
}

// headReader reads b, its first bytes read from head in their place
// (gzip 0.5's header, as isal.OldMagicHeader remakes it), a byte at a
// time: at is how far it read.
type headReader struct {
	head, b []byte
	at      int
}

func (m *headReader) ReadByte() (byte, error) {
	if m.at >= len(m.b) {
		return 0, io.EOF
	}
	c := m.b[m.at]
	if m.at < len(m.head) {
		c = m.head[m.at]
	}
	m.at++
	return c, nil
}

func (m *headReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := m.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		p[n] = c
		n++
	}
	return n, nil
}

func (j *joinedReader) close() {
	if j.release != nil {
		j.release()
	}
	j.cur, j.release = nil, nil
}

// joinedFormats reads data as j's tool does, its output counted against
// the layer's limits, until it meets a second format: the count of
// formats it met (at most 2).
func (w *walker) joinedFormats(j *joinedReader) (int, error) {
	defer j.close()
	ur := &unarchiveReader{r: j, w: w, what: j.tool.name}
	buf := make([]byte, 32<<10)
	for j.formats < 2 {
		if _, err := ur.Read(buf); err != nil {
			if err == io.EOF || !w.hardError(err) {
				break
			}
			return 0, err
		}
	}
	return j.formats, nil
}

// walkJoined scans what each tool that joins formats writes of data, the
// file it or a stream behind its start at base, when that holds frames of
// more than one format (see joinedReader). read holds where the frames
// of the file that such a reading went through start: one is not the
// start of another, or a file of n frames would cost n²/2 frames read.
func (w *walker) walkJoined(it item, data []byte, base int64, read map[int64]bool) error {
	if read[base] {
		return nil
	}
	for _, tool := range joinTools {
		if tool.format(data) == uncompressed {
			continue
		}
		n, err := w.joinedFormats(&joinedReader{w: w, tool: tool, data: data, base: base, at: read})
		if err != nil {
			return err
		}
		if n < 2 {
			continue
		}
		j := &joinedReader{w: w, tool: tool, data: data, base: base, at: read}
		err = w.walkDecoded(it, it.member(tool.name, it.exec), decoderErrors(j), tool.name+" "+it.shown())
		j.close()
		if err == errTooDeep {
			continue
		}
		if err = w.settle(it, err); err != nil {
			return err
		}
	}
	return nil
}

// walkJoinedSpooled is walkJoined for the n bytes at off of a file larger
// than one window, spooled whole to sp: the spool is mapped for the
// reading, so that frames of several formats padded past one window are
// joined too (outside attack round 22b left them).
func (w *walker) walkJoinedSpooled(it item, sp *spool, off, n int64, read map[int64]bool) error {
	if read[off] {
		return nil
	}
	data, unmap, err := sp.mapped(off + n)
	if err != nil {
		return err
	}
	defer unmap()
	return w.walkJoined(it, data[off:off+n], off, read)
}

// gzipMember reads the one gzip member b starts with as zlib's inflate
// reads it for zstd -dc and gzip -dc: its header's fields of any length
// (Go's compress/gzip refuses a name or a comment of 512 bytes or more,
// which the tools read: outside attack round 23, F1), its header CRC-16
// checked, its deflate data, then its trailer's CRC-32 and length
// checked. The output is given as it is decoded, as the tools write it
// before they check the trailer.
type gzipMember struct {
	src *headReader
	fr  io.ReadCloser
	crc hash.Hash32
	n   uint32
}

func newGzipMember(b []byte) (*gzipMember, error) {
	n, ok := isal.HeaderLen(b)
	if !ok {
		return nil, corruptError("read gzip header", errors.New("the header runs past the file's end"))
	}
	h := b[:n]
	if old := isal.OldMagicHeader(b); old != nil {
		h = old
	}
	if h[2] != 8 || h[3]&0xe0 != 0 {
		return nil, corruptError("read gzip header", errors.New("unknown method or flags"))
	}
	if h[3]&2 != 0 && uint16(crc32.ChecksumIEEE(h[:n-2])) != binary.LittleEndian.Uint16(h[n-2:]) {
		return nil, corruptError("read gzip header", errors.New("header CRC-16 mismatch"))
	}
	src := &headReader{b: b, at: n}
	return &gzipMember{src: src, fr: flate.NewReader(src), crc: crc32.NewIEEE()}, nil
}

func (g *gzipMember) Read(p []byte) (int, error) {
	k, err := g.fr.Read(p)
	g.crc.Write(p[:k])
	g.n += uint32(k)
	if err != io.EOF {
		if err != nil {
			err = corruptError("read gzip member", err)
		}
		return k, err
	}
	var t [8]byte
	if _, err := io.ReadFull(g.src, t[:]); err != nil {
		return k, corruptError("read gzip trailer", io.ErrUnexpectedEOF)
	}
	if binary.LittleEndian.Uint32(t[:]) != g.crc.Sum32() || binary.LittleEndian.Uint32(t[4:]) != g.n {
		return k, corruptError("read gzip trailer", errors.New("CRC-32 or length mismatch"))
	}
	return k, io.EOF
}

// at is where the member's bytes read so far end in b.
func (g *gzipMember) at() int { return g.src.at }
