package samples

import (
	"archive/zip"
	"bytes"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Zip compression methods besides stored and deflated that bsdtar
// unpacks, as their numbers in the zip format.
const (
	ZipLZMA uint16 = 14
	ZipZstd uint16 = 93
	ZipXz   uint16 = 95
)

// ZipMethod returns a zip of files, each compressed with method (ZipLZMA,
// ZipZstd or ZipXz) as 7-Zip, Python and bsdtar write and read them.
func ZipMethod(method uint16, files ...File) []byte {
	return zipOf(method, zipCompressor(method), files)
}

// ZipMember returns data compressed as a zip member of method (ZipLZMA,
// ZipZstd or ZipXz) holds it: for LZMA, the zip's 4-byte header, the
// properties and a stream with an end marker.
func ZipMember(method uint16, data []byte) []byte {
	var b bytes.Buffer
	w, err := newZipEncoder(method, &b)
	if err != nil {
		panic(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// zipCompressor is the compressor of method. archive/zip makes it before
// it writes the member's local header, and the xz and LZMA encoders write
// their headers as they are made: each is made on the first write.
func zipCompressor(method uint16) zip.Compressor {
	return func(w io.Writer) (io.WriteCloser, error) {
		return &lazyWriter{make: func() (io.WriteCloser, error) { return newZipEncoder(method, w) }}, nil
	}
}

type lazyWriter struct {
	make func() (io.WriteCloser, error)
	w    io.WriteCloser
}

func (l *lazyWriter) open() error {
	if l.w != nil {
		return nil
	}
	w, err := l.make()
	l.w = w
	return err
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if err := l.open(); err != nil {
		return 0, err
	}
	return l.w.Write(p)
}

func (l *lazyWriter) Close() error {
	if err := l.open(); err != nil {
		return err
	}
	return l.w.Close()
}

func newZipEncoder(method uint16, w io.Writer) (io.WriteCloser, error) {
	switch method {
	case ZipZstd:
		return zstd.NewWriter(w)
	case ZipXz:
		return xz.NewWriter(w)
	case ZipLZMA:
		// The zip form: the LZMA SDK's version and the size of the
		// properties, the properties, then the stream with an end
		// marker; the classic header's 8-byte size is left out.
		if _, err := w.Write([]byte{16, 2, 5, 0}); err != nil {
			return nil, err
		}
		return lzma.WriterConfig{EOSMarker: true}.NewWriter(&lzmaZipWriter{w: w})
	}
	panic("no compressor for zip method")
}

// lzmaZipWriter drops bytes 5 to 12 of what is written to it: the size
// field of the classic LZMA header.
type lzmaZipWriter struct {
	w io.Writer
	n int
}

func (l *lzmaZipWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		switch {
		case l.n >= 5 && l.n < lzma.HeaderLen:
			skip := min(len(p), lzma.HeaderLen-l.n)
			l.n += skip
			p = p[skip:]
		default:
			k := len(p)
			if l.n < 5 {
				k = min(k, 5-l.n)
			}
			if _, err := l.w.Write(p[:k]); err != nil {
				return 0, err
			}
			l.n += k
			p = p[k:]
		}
	}
	return total, nil
}
