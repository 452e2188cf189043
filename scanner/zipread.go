package scanner

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/flate"
)

// errZipDirectory stops reading a zip's central directory past
// maxZipDirectory bytes.
var errZipDirectory = errors.New("zip directory too large")

// maxZipDirectory bounds the bytes read to parse a zip's central
// directory (and so the memory its entries take, a few times that):
// archive/zip reads entries until one does not parse, whatever the count
// at the end says, so a zip of gigabytes could otherwise be all
// directory. 16 MiB holds some 200,000 entries of ordinary names.
const maxZipDirectory = 16 << 20

// budgetReaderAt fails reads once left bytes have been read.
type budgetReaderAt struct {
	r    io.ReaderAt
	left int64
}

func (b *budgetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > b.left {
		return 0, errZipDirectory
	}
	b.left -= int64(len(p))
	return b.r.ReadAt(p, off)
}

// openZip reads the directory of a zip of size bytes in ra, bounded by
// maxZipDirectory (and the 65 KiB searched for its end); a larger one is
// refused with ErrLimit.
func openZip(it item, ra io.ReaderAt, size int64) (*zip.Reader, error) {
	br := &budgetReaderAt{r: ra, left: maxZipDirectory + 66<<10}
	zr, err := zip.NewReader(br, size)
	switch {
	case errors.Is(err, errZipDirectory):
		return nil, limitError("zip %s has a central directory of more than %d bytes", it.shown(), maxZipDirectory)
	case err != nil:
		return nil, fmt.Errorf("read zip directory of %s: %w", it.shown(), err)
	}
	// Members are read through br too: no budget for them, their bytes
	// are bounded by the limits on what they unpack to.
	br.left = math.MaxInt64
	zr.RegisterDecompressor(zip.Deflate, newInflater)
	return zr, nil
}

// inflaters are reused across zip members: a jar holds thousands of
// small ones, and a fresh inflater costs its tables and window each time.
// klauspost's inflater reads deflate faster than the standard library's.
var inflaters sync.Pool

// inflater returns itself to inflaters when first closed (a second
// Close must not hand it out twice).
type inflater struct {
	io.ReadCloser
	closed bool
}

func (f *inflater) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.ReadCloser.Close()
	inflaters.Put(f)
	return err
}

func newInflater(r io.Reader) io.ReadCloser {
	if f, ok := inflaters.Get().(*inflater); ok {
		if err := f.ReadCloser.(flate.Resetter).Reset(r, nil); err == nil {
			f.closed = false
			return f
		}
	}
	return &inflater{ReadCloser: flate.NewReader(r)}
}
