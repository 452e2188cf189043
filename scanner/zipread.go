package scanner

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/pullgate/pullgate/internal/isal"
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
	if err != nil && !errors.Is(err, errZipDirectory) {
		// archive/zip refuses a directory whose entries its end record
		// counts wrongly; unzip, jar and Python read the entries there.
		if fixed, ok := recountedZip(ra, size); ok {
			br = &budgetReaderAt{r: fixed, left: maxZipDirectory + 66<<10}
			zr, err = zip.NewReader(br, size)
		}
	}
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

// inflaters holds raw deflate readers for zip members, reused because a
// jar holds thousands of small members and a fresh reader costs its C
// state and buffers each time. ISA-L inflates members two and a half to
// three times as fast as klauspost's inflater on one core (measured in
// docs/performance.md), and the walker reading a jar, the critical path
// of a cold pull, does nothing else meanwhile. The pool holds Go objects
// only: a reader it drops on a GC frees its C memory through the cleanup
// isal.NewRawReader sets, so the pool keeps no C memory the heap does not.
var inflaters sync.Pool

// inflater is one member's reader. Its first Close hands its isal reader
// back to inflaters, detached from the member's source; later Closes do
// nothing, and a Read after Close fails, so a reader in the pool is never
// used by two members. Once the stream ends, used is how many bytes of
// the source it took.
type inflater struct {
	z    *isal.Reader
	done bool
	used int64
}

var errInflaterClosed = errors.New("read of a closed zip member")

func (f *inflater) Read(p []byte) (int, error) {
	if f.z == nil {
		return 0, errInflaterClosed
	}
	n, err := f.z.Read(p)
	if err == io.EOF && !f.done {
		f.done, f.used = true, f.z.InputUsed()
	}
	return n, err
}

func (f *inflater) Close() error {
	if f.z == nil {
		return nil
	}
	z := f.z
	f.z = nil
	if z.Reset(nil) == nil {
		inflaters.Put(z)
	}
	return nil
}

// newInflater is archive/zip's decompressor for zip.Deflate.
func newInflater(r io.Reader) io.ReadCloser {
	if f := newRawInflater(r); f != nil {
		return f
	}
	return failed(errors.New("inflate zip member: isal: out of memory"))
}

// newRawInflater is an inflater of r, from the pool or new; nil when
// ISA-L has no memory for one.
func newRawInflater(r io.Reader) *inflater {
	if z, ok := inflaters.Get().(*isal.Reader); ok && z.Reset(r) == nil {
		return &inflater{z: z}
	}
	z, err := isal.NewRawReader(r)
	if err != nil {
		return nil
	}
	return &inflater{z: z}
}

// failedReader fails every read with err.
type failedReader struct{ err error }

func (f *failedReader) Read([]byte) (int, error) { return 0, f.err }

// zipMemberReader reads one member's data, and says where the data ends
// once it has been read to its end.
type zipMemberReader struct {
	io.ReadCloser
	inf     *inflater
	dataOff int64
	stored  int64 // the end of a stored member's data
}

// end is the offset where the member's data ended, if it was read to its
// end (a deflated member: its stream's final block).
func (m *zipMemberReader) end() (int64, bool) {
	if m.inf == nil {
		return m.stored, true
	}
	return m.dataOff + m.inf.used, m.inf.done
}

// inflateMember inflates the deflate stream at dataOff, read from src.
func inflateMember(src io.Reader, dataOff int64) *zipMemberReader {
	inf := newRawInflater(src)
	if inf == nil {
		return &zipMemberReader{ReadCloser: failed(errors.New("inflate zip member: isal: out of memory")), stored: -1}
	}
	return &zipMemberReader{ReadCloser: inf, inf: inf, dataOff: dataOff}
}

// openMember opens a zip member of a zip of size bytes in ra, whose data
// starts at dataOff, as unzip and jar extract it: a deflated member is
// inflated to the end of its deflate stream, bounded only by the end of
// the file, whatever sizes and CRC-32 its headers declare (archive/zip
// stops at the declared compressed size and refuses the rest, which would
// leave a member whose stream is longer than it says unscanned past that
// point, and one that is shorter unscanned altogether). Other methods are
// read by archive/zip.
//
// Methods are read as bsdtar reads them, by their low byte (see
// zipMethodOf), and an encrypted member is not decoded (errEncrypted).
func openMember(f *zip.File, ra io.ReaderAt, dataOff, size int64, charge func(int64) error) (*zipMemberReader, error) {
	m := zipMethodOf(f.Method)
	switch {
	case f.Flags&zipEncrypted != 0 || m == zipAES:
		return nil, errEncrypted
	case m == zip.Deflate:
		return inflateMember(io.NewSectionReader(ra, dataOff, size-dataOff), dataOff), nil
	case zipDecoded(m) && m != zip.Store, m == zip.Store && f.Method != zip.Store:
		// Decoded as bsdtar decodes it: its compressed size's bytes, to
		// the end of its stream, whatever size and CRC-32 it declares
		// (archive/zip would drop the bytes past its declared size).
		end := dataOff + int64(min(f.CompressedSize64, uint64(size)))
		src := io.NewSectionReader(ra, dataOff, max(end-dataOff, 0))
		if m == zip.Store {
			return &zipMemberReader{ReadCloser: io.NopCloser(src), stored: end}, nil
		}
		return &zipMemberReader{ReadCloser: newZipDecoder(m, src, charge), stored: end}, nil
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	return &zipMemberReader{ReadCloser: rc, stored: dataOff + int64(f.CompressedSize64)}, nil
}

// scanMember scans a member of unknown true length: one that fits a batch
// is read whole first, so it is packed with others at the size it really
// has; a longer one is scanned as a stream. A member that cannot be read
// to its end is scanned as far as it reads, and the error returned: the
// reader's own, as fillChunk keeps it (io.ReadFull would make a decoder's
// io.ErrUnexpectedEOF for a cut stream look like a short member's end).
func (w *walker) scanMember(it item, r io.Reader) error {
	buf := w.memberBuf(it.nest, w.s.batchSize+1)
	n, rerr := fillChunk(r, buf)
	if rerr == nil {
		_, err := w.scanFile(it, io.MultiReader(bytes.NewReader(buf[:n]), r), -1)
		return err
	}
	if _, err := w.scanFile(it, bytes.NewReader(buf[:n]), int64(n)); err != nil {
		return err
	}
	if rerr == io.EOF {
		return nil
	}
	return rerr
}

// memberBuf is the walker's buffer for reading one member at depth nest,
// reused. One per depth: a member read as a stream may still be reading
// from its buffer while what it holds is unpacked, one level deeper.
func (w *walker) memberBuf(nest, n int) []byte {
	for len(w.member) <= nest {
		w.member = append(w.member, nil)
	}
	if cap(w.member[nest]) < n {
		w.member[nest] = make([]byte, n)
	}
	return w.member[nest][:n]
}

// zipEndMagic starts a zip's end of central directory record.
var zipEndMagic = []byte("PK\x05\x06")

// zipAtEnd says whether data, a whole file that does not start as a zip,
// ends as one, and where that zip starts: unzip, jar and Python read a
// zip from its end, whatever comes before it, so a self-extractor or a
// "#!" zipapp is a zip to them. The end record lies in the last 64 KiB
// and 22 bytes (its comment is at most 65,535 bytes). A zip archive/zip
// opens whole, recounted if need be (see recountedZip), with at least one
// member, is read whole (start 0: archive/zip finds a prefix itself);
// one it refuses is read from where it starts (see zipStart), so that the
// recount and the local walk apply to it as to a zip without a prefix.
func zipAtEnd(data []byte) (z endZip, ok bool) {
	tailAt := max(0, len(data)-zipTail)
	if !bytes.Contains(data[tailAt:], zipEndMagic) {
		return z, false
	}
	return zipAtEndOf(bytes.NewReader(data), int64(len(data)), data[tailAt:],
		func() int64 { return int64(bytes.Index(data, zipMagic)) })
}

// endZip is a zip at a file's end (see zipAtEnd): where it starts, and
// where the data of each entry its directory lists starts, when
// archive/zip reads it whole.
type endZip struct {
	start  int64
	listed map[int64]bool
}

// lists says whether the zip entry whose local header h is at off in the
// file is one of z's: listed in its directory, or, for a zip archive/zip
// refuses, at or after its start.
func (z endZip) lists(h []byte, off int64) bool {
	if z.listed == nil {
		return off >= z.start
	}
	le := binary.LittleEndian
	return len(h) >= 30 && z.listed[off+30+int64(le.Uint16(h[26:]))+int64(le.Uint16(h[28:]))]
}

// zipTail is how far from a file's end a zip's end record may start.
const zipTail = 1<<16 + 22

// zipAtEndOf is zipAtEnd for a file of size bytes read through ra, whose
// last zipTail bytes (or all, when it is shorter) are tail; first finds
// its first local header, or -1.
func zipAtEndOf(ra io.ReaderAt, size int64, tail []byte, first func() int64) (z endZip, ok bool) {
	if !bytes.Contains(tail, zipEndMagic) {
		return z, false
	}
	zr, err := zip.NewReader(&budgetReaderAt{r: ra, left: maxZipDirectory + 66<<10}, size)
	if err != nil && !errors.Is(err, errZipDirectory) {
		if fixed, ok := recountedZip(ra, size); ok {
			zr, err = zip.NewReader(&budgetReaderAt{r: fixed, left: maxZipDirectory + 66<<10}, size)
		}
	}
	if err == nil {
		z.listed = make(map[int64]bool, len(zr.File))
		for _, f := range zr.File {
			if off, err := f.DataOffset(); err == nil {
				z.listed[off] = true
			}
		}
		return z, len(zr.File) > 0
	}
	z.start, ok = zipStart(ra, tail, size-int64(len(tail)), first)
	return z, ok
}

// zipStart finds where the zip whose end record lies in tail (the file's
// bytes from tailAt on, read through ra) starts, when archive/zip cannot
// read its directory: for the last end record with a central directory
// entry where its size says the directory starts, the directory's start
// less the offset the record gives it, when a local header is there (the
// offsets count from the zip's start); else the first local header before
// the directory (the offsets count the prefix too, and the local walk
// reads the entries from there). ok is false when no end record has a
// directory entry before it, or no local header is found.
func zipStart(ra io.ReaderAt, tail []byte, tailAt int64, first func() int64) (int64, bool) {
	le := binary.LittleEndian
	firstAt := int64(-2) // the first local header, searched once
	for end := len(tail) - 22; end >= 0; end-- {
		k := bytes.LastIndex(tail[:end+4], zipEndMagic)
		if k < 0 {
			return 0, false
		}
		end = k
		dirSize, dirOff := int64(le.Uint32(tail[end+12:])), int64(le.Uint32(tail[end+16:]))
		dir := tailAt + int64(end) - dirSize
		if dirSize < 46 || dir < 0 || !holdsAt(ra, dir, []byte("PK\x01\x02")) {
			continue
		}
		if start := dir - dirOff; start > 0 && holdsAt(ra, start, zipMagic) {
			return start, true
		}
		if firstAt == -2 {
			firstAt = first()
		}
		if firstAt >= 0 && firstAt < dir {
			return firstAt, true
		}
	}
	return 0, false
}

// holdsAt says whether ra holds m at off.
func holdsAt(ra io.ReaderAt, off int64, m []byte) bool {
	b := make([]byte, len(m))
	n, _ := ra.ReadAt(b, off)
	return n == len(m) && bytes.Equal(b, m)
}

// recountedZip is ra with its end record's entry counts set to the number
// of central directory entries that really follow one another from where
// the record says the directory starts, when they differ (archive/zip
// compares the two and refuses the zip). Only a zip without zip64 records
// and with no prefix is recounted; ok is false when there is nothing to
// change or the record cannot be found.
func recountedZip(ra io.ReaderAt, size int64) (io.ReaderAt, bool) {
	tailLen := min(size, 1<<16+22)
	tail := make([]byte, tailLen)
	if _, err := ra.ReadAt(tail, size-tailLen); err != nil {
		return nil, false
	}
	i := bytes.LastIndex(tail, zipEndMagic)
	if i < 0 || len(tail)-i < 22 {
		return nil, false
	}
	end := tail[i : i+22]
	dirSize, dirOff := int64(binary.LittleEndian.Uint32(end[12:])), int64(binary.LittleEndian.Uint32(end[16:]))
	if dirSize > maxZipDirectory || dirOff+dirSize > size-tailLen+int64(i) {
		return nil, false
	}
	dir := make([]byte, dirSize)
	if _, err := ra.ReadAt(dir, dirOff); err != nil {
		return nil, false
	}
	n := 0
	for p := 0; p+46 <= len(dir) && binary.LittleEndian.Uint32(dir[p:]) == 0x02014b50; n++ {
		p += 46 + int(binary.LittleEndian.Uint16(dir[p+28:])) + int(binary.LittleEndian.Uint16(dir[p+30:])) + int(binary.LittleEndian.Uint16(dir[p+32:]))
	}
	if n == 0 || uint16(n) == binary.LittleEndian.Uint16(end[10:]) {
		return nil, false
	}
	patched := bytes.Clone(end)
	binary.LittleEndian.PutUint16(patched[8:], uint16(n))
	binary.LittleEndian.PutUint16(patched[10:], uint16(n))
	return &overlaidReaderAt{r: ra, at: size - tailLen + int64(i), b: patched}, true
}

// overlaidReaderAt reads r with b in place of the bytes at at.
type overlaidReaderAt struct {
	r  io.ReaderAt
	at int64
	b  []byte
}

func (o *overlaidReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.r.ReadAt(p, off)
	for i := range o.b {
		if k := o.at + int64(i) - off; k >= 0 && k < int64(n) {
			p[k] = o.b[i]
		}
	}
	return n, err
}
