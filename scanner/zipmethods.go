package scanner

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Zip compression methods besides stored and deflated. The extractors a
// host runs unpack more of them than Go's archive/zip and Java do:
// Debian's unzip bzip2 (and the old shrink, reduce, implode and
// deflate64), bsdtar bzip2, LZMA, xz, zstd and PPMd, Python's zipfile
// bzip2 and LZMA. A member of a method pullgate decodes is scanned as a
// deflated one is; one of a method some extractor unpacks and pullgate
// does not is refused (see zipUndecoded): the host could write out bytes
// pullgate never saw.
const (
	zipBzip2 = 12
	zipLZMA  = 14
	zipZstd  = 93
	zipXz    = 95
)

// zipAES is the method of a member encrypted with WinZip's AES; its real
// method is in an extra field.
const zipAES = 99

// zipMethodOf is the method m as bsdtar reads it: libarchive keeps the low
// byte of the field alone, so 0x108 is deflate to it, 0x10c bzip2. unzip,
// Python and Java read all 16 bits and unpack no such member.
func zipMethodOf(m uint16) uint16 { return m & 0xff }

// errEncrypted is the error of a member that is encrypted: extractors
// unpack it only with its password.
var errEncrypted = errors.New("zip member is encrypted")

// zipDecoded reports whether pullgate decodes members of method m.
func zipDecoded(m uint16) bool {
	switch m {
	case 0, 8, zipBzip2, zipLZMA, zipZstd, zipXz:
		return true
	}
	return false
}

// zipUndecoded names the methods an extractor on a host unpacks and
// pullgate does not, with the extractor; a member of one is refused.
var zipUndecoded = map[uint16]string{
	1:  "shrink, which unzip unpacks",
	2:  "reduce, which unzip unpacks",
	3:  "reduce, which unzip unpacks",
	4:  "reduce, which unzip unpacks",
	5:  "reduce, which unzip unpacks",
	6:  "implode, which unzip unpacks",
	9:  "deflate64, which unzip unpacks",
	98: "PPMd, which bsdtar unpacks",
}

// zipMethodFinding is the finding for a member of method m that pullgate
// does not decode: high (refused) when an extractor unpacks it, medium
// when none on a host does (the member is written out by none either).
func zipMethodFinding(m uint16) (severity, reason string) {
	if what, ok := zipUndecoded[m]; ok {
		return SeverityHigh, fmt.Sprintf("zip member is compressed with %s (method %d) and pullgate cannot read it: "+
			"what it holds was never scanned, so it is refused", what, m)
	}
	return SeverityMedium, fmt.Sprintf("zip member is compressed with method %d, which no extractor on a host unpacks, so it was not scanned", m)
}

// newZipDecoder returns a reader of the member data r (its compressed
// bytes) decoded by method m, one of zipBzip2, zipLZMA, zipZstd and zipXz.
// Each decoder's memory is bounded as the layer's own decompression is
// (the zstd window, the xz and LZMA dictionaries); a member that would
// need more fails with a limit error, which refuses the layer.
func newZipDecoder(m uint16, r io.Reader, charge func(int64) error) io.ReadCloser {
	d := zipDecoder(m, r, charge)
	return struct {
		io.Reader
		io.Closer
	}{decoderErrors(d), d}
}

func zipDecoder(m uint16, r io.Reader, charge func(int64) error) io.ReadCloser {
	switch m {
	case zipBzip2:
		br := bufio.NewReader(r)
		if err := chargeBzip2(br, charge); err != nil {
			return failed(err)
		}
		return io.NopCloser(bzip2.NewReader(br))
	case zipXz:
		g := newXzGuard(r)
		g.charge = charge
		xr, err := xz.NewReader(g)
		if err != nil {
			return failed(corruptError("read xz header of zip member", err))
		}
		return io.NopCloser(xr)
	case zipZstd:
		zr := zstdPool.Get().(*zstd.Decoder)
		if err := zr.Reset(r); err != nil {
			zstdPool.Put(zr)
			return failed(corruptError("read zstd header of zip member", err))
		}
		return &zstdMember{zr}
	case zipLZMA:
		return newZipLZMA(r, charge)
	}
	return failed(fmt.Errorf("zip method %d is not decoded", m))
}

func failed(err error) io.ReadCloser { return io.NopCloser(&failedReader{err}) }

// zstdMember gives its decoder back to the pool when closed.
type zstdMember struct{ d *zstd.Decoder }

func (z *zstdMember) Read(p []byte) (int, error) {
	if z.d == nil {
		return 0, io.ErrClosedPipe
	}
	return z.d.Read(p)
}

func (z *zstdMember) Close() error {
	if z.d != nil {
		z.d.Reset(nil)
		zstdPool.Put(z.d)
		z.d = nil
	}
	return nil
}

// newZipLZMA decodes a zip member of method 14: a 4-byte header (the
// LZMA SDK's version, then the size of the properties, 5), the
// properties (lc, lp and pb in one byte, the dictionary size), then the
// LZMA stream. It is decoded as bsdtar decodes it, with its size
// unknown: to its end-of-stream marker or to the end of its data,
// whatever size the zip headers declare (archive/zip still checks the
// directory's size and CRC-32 against what it decodes). The dictionary
// is bounded as an xz stream's is.
func newZipLZMA(r io.Reader, charge func(int64) error) io.ReadCloser {
	var h [9]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return failed(corruptError("read LZMA header of zip member", err))
	}
	if n := binary.LittleEndian.Uint16(h[2:]); n != 5 {
		return failed(corruptError("read LZMA header of zip member", fmt.Errorf("%d bytes of properties, not 5", n)))
	}
	d := binary.LittleEndian.Uint32(h[5:])
	if d > xzMaxDict {
		return failed(limitError("LZMA zip member needs a %d byte dictionary, more than %d", d, xzMaxDict))
	}
	if charge != nil {
		if err := charge(int64(max(d, lzma.MinDictCap))); err != nil {
			return failed(err)
		}
	}
	// The classic .lzma header: the properties and an unknown size.
	hdr := append(bytes.Clone(h[4:9]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	lr, err := lzma.ReaderConfig{DictCap: xzMaxDict}.NewReader(io.MultiReader(bytes.NewReader(hdr), r))
	if err != nil {
		return failed(corruptError("read LZMA header of zip member", err))
	}
	return io.NopCloser(&lzmaToEnd{r: lr})
}

// lzmaToEnd ends an LZMA stream without an end-of-stream marker where its
// data ends, as an extractor that knows the member's size does: the
// decoder says io.ErrUnexpectedEOF there, which is read as io.EOF. On that
// or any other error the decoder may still hold bytes it decoded before
// it: they are read out first, then the error is returned.
type lzmaToEnd struct {
	r   io.Reader
	err error // the decoder's error, returned once what it holds is read
}

func (l *lzmaToEnd) Read(p []byte) (int, error) {
	if l.err != nil {
		if n, _ := l.r.Read(p); n > 0 {
			return n, nil
		}
		return 0, l.err
	}
	n, err := l.r.Read(p)
	if err == nil || err == io.EOF {
		return n, err
	}
	l.err = err
	if errors.Is(err, io.ErrUnexpectedEOF) {
		l.err = io.EOF
	}
	if n > 0 {
		return n, nil
	}
	return l.Read(p)
}

// otherMember reads the local entry e, of a method decoded by
// newZipDecoder, from src (its data to the end of the file): as far as
// its header's compressed size says, or, when only its data descriptor
// says it, to the end of the file, where the decoder stops at its
// stream's end and the end of the entry is not known.
func otherMember(e zipLocal, src *io.SectionReader, charge func(int64) error) *zipMemberReader {
	if e.flags&zipDescriptor != 0 {
		return &zipMemberReader{ReadCloser: newZipDecoder(e.method, src, charge), stored: -1}
	}
	n := min(e.csize, src.Size())
	return &zipMemberReader{ReadCloser: newZipDecoder(e.method, io.LimitReader(src, n), charge), stored: e.dataOff + n}
}

// undecodedLocal is the finding for a local entry that is encrypted or of
// a method pullgate does not decode.
func undecodedLocal(e zipLocal) (severity, reason string) {
	if e.flags&zipEncrypted != 0 || e.method == zipAES {
		return SeverityMedium, "zip entry read from its local header is encrypted (extractors unpack it only with its password), so it was not scanned"
	}
	severity, reason = zipMethodFinding(e.method)
	return severity, reason + " (an entry read from its local header)"
}

// unopened is the finding for a member of the directory that could not be
// opened (err), of method m.
func unopened(m uint16, err error) (severity, reason string) {
	switch {
	case errors.Is(err, errEncrypted):
		return SeverityMedium, "zip member is encrypted (extractors unpack it only with its password), so it was not scanned"
	case !zipDecoded(zipMethodOf(m)):
		return zipMethodFinding(zipMethodOf(m))
	}
	return SeverityMedium, "zip member could not be opened, so it was not scanned: " + err.Error()
}
