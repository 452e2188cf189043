package scanner

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"compress/bzip2"
	"errors"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pullgate/pullgate/internal/isal"
)

// walkStream decompresses a gzip, xz, bzip2 or zstd file read from br: a
// tar inside is walked member by member (a .tar.gz is one level), any
// other content is scanned as one file named for the compressed one
// without its extension ("xmrig.gz" holds "xmrig").
func (w *walker) walkStream(it item, br *bufio.Reader) error {
	// Enough for the skippable frames that may come before an LZ4 frame
	// (see nestedCompression).
	magic, err := br.Peek(min(br.Size(), 4096))
	if err != nil && err != io.EOF {
		return err
	}
	c := nestedCompression(magic)
	if weakSignature(c) {
		// Known by a weak signature (see isLzmaAlone, isZlib): a decoding
		// error may only mean the file is no such stream at all.
		err := w.walkStreamOf(it, br, c)
		if err != nil && !w.hardError(err) {
			return quietError{err}
		}
		return err
	}
	return w.walkStreamOf(it, br, c)
}

// quietError is a failure to read a file as an archive that is no finding
// of its own: the file is scanned whole as bytes all the same (see settle).
type quietError struct{ error }

func (q quietError) Unwrap() error { return q.error }

// walkStreamOf is walkStream for a stream of compression c.
func (w *walker) walkStreamOf(it item, br *bufio.Reader, c compression) error {
	onMember := w.onMember // for this stream, not those inside it
	w.onMember = nil
	body, release, err := decompress(c, br, w.chargeDecoder)
	if err != nil {
		return err
	}
	defer release()
	if zr, ok := body.(*isal.Reader); ok && onMember != nil {
		body = newMemberReader(zr, onMember)
	}
	return w.walkDecoded(it, it.member(decompressedName(it.name, c), it.exec), decoderErrors(body), c.String()+" "+it.shown())
}

// walkDecoded looks into whole, the file body decodes from it: a tar is
// walked member by member (a compressed tar is one level: its members are
// it's), any other content is scanned as one file. what names the
// decoding in a limit's error.
func (w *walker) walkDecoded(it, whole item, body io.Reader, what string) error {
	ur := &unarchiveReader{r: body, w: w, what: what}
	dr := bufio.NewReaderSize(ur, 2*blockSize)
	head, err := dr.Peek(2 * blockSize)
	if err != nil && err != io.EOF && (len(head) == 0 || w.hardError(err)) {
		return err
	}
	// A stream that fails after its first bytes is read for those: the
	// host's gzip -d or xz -d writes them before it complains, and dr
	// gives the error after them.
	if len(head) > 0 && head[0] == 0 && isTar(head) {
		// Zero blocks: an empty tar, or an ISO image's system area,
		// looked at further only then.
		dr = bufio.NewReaderSize(dr, isoMagicAt+len(isoMagic))
	}
	if isTar(head) && !isISO(dr) {
		if err := w.walkMembers(it, dr, &whole); err != nil {
			return err
		}
		// What follows the tar's end is read to the end, as a layer's
		// is (it counts against MaxLayerBytes, and only the end verifies
		// the stream's checksum), and scanned from its first byte that is
		// not zero: content that starts with two zero blocks is an empty
		// tar to archive/tar, but not to a shell that runs it.
		return w.afterZeros(dr, func(rest io.Reader) error {
			_, err := w.scanFile(whole, rest, -1)
			return err
		})
	}
	// Read as a member of unknown length: one that fits a batch is
	// looked at whole (a zip behind a prefix, see zipAtEnd).
	return w.scanMember(whole, dr)
}

// isISO says whether what r holds is an ISO 9660 image: its first 32 KiB,
// the system area, is zeros, which archive/tar reads as a tar's end, where
// bsdtar reads the image (outside attack round 22, F12).
func isISO(r *bufio.Reader) bool {
	if r.Size() < isoMagicAt+len(isoMagic) {
		return false // a tar's first header: no zero blocks
	}
	h, _ := r.Peek(isoMagicAt + len(isoMagic))
	return len(h) == isoMagicAt+len(isoMagic) && bytes.Equal(h[isoMagicAt:], isoMagic)
}

// decoderErrors reports what a decoder's error says of the stream: zstd's
// window limit as ErrLimit, as for layers, a zstd frame that needs a
// dictionary as errUnsupported, and a bzip2 stream in the
// randomised mode (bzip2 0.9.0's, which libbz2 still unpacks and Go's
// compress/bzip2 refuses) as errUnsupported.
func decoderErrors(r io.Reader) io.Reader { return decoderErrorsReader{r} }

type decoderErrorsReader struct{ r io.Reader }

func (d decoderErrorsReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	var bz bzip2.StructuralError
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded):
		err = limitError("zstd stream needs more than %d bytes of window: %v", zstdMaxWindow, err)
	case errors.Is(err, zstd.ErrUnknownDictionary):
		err = unsupportedError("zstd frame made with a dictionary (zstd -D), which zstd unpacks given the dictionary")
	case errors.Is(err, isal.ErrHeaderTooLong):
		err = unsupportedError("%v, which gzip unpacks", err)
	case errors.As(err, &bz) && bz == bzip2Randomized:
		err = unsupportedError("bzip2 stream in the randomised mode, which bzip2 and bsdtar unpack")
	}
	return n, err
}

// bzip2Randomized is compress/bzip2's error for a block in the
// randomised mode.
const bzip2Randomized = bzip2.StructuralError("deprecated randomized files")

// decompressedName is the name of what a compressed file named name
// holds: the name without its compression's extension, or the
// compression's name when it has none.
func decompressedName(name string, c compression) string {
	lower := strings.ToLower(name)
	for _, e := range [...]struct{ ext, then string }{
		{".tgz", ".tar"}, {".txz", ".tar"}, {".tbz2", ".tar"}, {".tzst", ".tar"},
		{".gz", ""}, {".xz", ""}, {".bz2", ""}, {".zst", ""}, {".lzma", ""}, {".tlz", ".tar"}, {".z", ""}, {".lz4", ""},
	} {
		if strings.HasSuffix(lower, e.ext) && len(name) > len(e.ext) {
			return name[:len(name)-len(e.ext)] + e.then
		}
	}
	return c.String()
}

// walkMembers walks a tar inside a file: every entry with a body is
// scanned as a member of parent, with its mode's exec bit. A hard link is
// scanned by its name only (an empty body with its exec bit): its content
// was scanned under its target's name.
//
// A header archive/tar refuses is skipped as GNU tar skips it (see
// resync); the walk ends with that error, for the caller to report, once
// the rest is read.
//
// The tar's own bytes are searched too (see tarOwn), named under parent,
// or, for a tar read out of a compressed file (decompressed set), under
// decompressed, and then scanned as bytes as well.
func (w *walker) walkMembers(parent item, r io.Reader, decompressed *item) error {
	cr := &tarCounter{r: r}
	own, scan := parent, decompressed != nil
	if scan {
		own = *decompressed
	}
	err := w.walkMembersOf(parent, own, cr, func() error { return w.searchTarOwn(own, &cr.own, scan, false) })
	if w.hardError(err) {
		return err
	}
	return cmp.Or(w.searchTarOwn(own, &cr.own, scan, true), err)
}

// walkMembersOf is walkMembers' walk; after each entry it calls flush.
// What a sparse member's fragments hold is named under own.
func (w *walker) walkMembersOf(parent, own item, cr *tarCounter, flush func() error) error {
	tr := tar.NewReader(cr)
	var refused error
	for {
		hdr, err := w.nextEntry(tr, parent.shown())
		if err == io.EOF {
			return refused
		}
		if err != nil && skipBadHeader(err) && !w.hardError(err) {
			refused = cmp.Or(refused, err)
			next, err := w.refused(parent, cr)
			if err != nil || next == nil {
				return cmp.Or(err, refused)
			}
			tr = tar.NewReader(io.MultiReader(bytes.NewReader(next), cr))
			continue
		}
		if err != nil {
			return err
		}
		var body io.Reader = tr
		size := hdr.Size
		switch hdr.Typeflag {
		case tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo, tar.TypeXGlobalHeader:
			if err := flush(); err != nil {
				return err
			}
			continue
		case tar.TypeLink:
			body, size = bytes.NewReader(nil), 0
		}
		child := parent.member(memberName(hdr.Name), hdr.Mode&0o111 != 0)
		if size, err = w.countMember(child.where, size); err != nil {
			return err
		}
		read := func() error {
			_, err := w.scanFile(child, body, size)
			return err
		}
		if sparse(hdr) {
			err = w.sparseBody(own, cr, read)
		} else {
			err = cr.own.body(read)
		}
		if err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

// countMember counts one more member against MaxFiles and returns the
// size to read it with. A declared size is not trusted for the limits: a
// tar or zip header may announce gigabytes it does not hold (Go's own
// archive/tar test data announces a 16 GiB file in a few kilobytes), so
// a member declared larger than MaxFileBytes is read as a stream of
// unknown size, and only the bytes it really yields count against
// MaxFileBytes and MaxLayerBytes.
func (w *walker) countMember(name string, declared int64) (int64, error) {
	if err := w.countFile(name, 0); err != nil {
		return 0, err
	}
	if declared < 0 || declared > w.s.limits.MaxFileBytes {
		return -1, nil
	}
	return declared, nil
}

// walkZipOf walks a zip of size bytes read from ra (a zip whole in
// memory, or spooled) as both kinds of extractor read it: from its
// central directory at the end (walkZipDirectory), then from its local
// headers (walkZipLocal), which also reads a zip whose directory
// archive/zip refuses. When head >= 0, only the zip's first head bytes
// were scanned as bytes, and what neither walk covers is scanned as bytes
// too (scanZipGaps). A directory that cannot be read is returned, once
// the local walk is done, for the caller to report, with what the walk
// covered, however it ended.
func (w *walker) walkZipOf(it item, ra io.ReaderAt, size, head int64, behind bool) (zw *zipWalk, err error) {
	zw = newZipWalk(it, ra, size)
	zw.behind = behind
	zr, dirErr := openZip(it, ra, size)
	switch {
	case dirErr == nil:
		if err := w.walkZipDirectory(zw, zr); err != nil {
			return zw, err
		}
	case w.hardError(dirErr):
		return zw, dirErr
	}
	if err := w.walkZipLocal(zw); err != nil {
		return zw, err
	}
	if dirErr != nil {
		// Reported by the caller, and the zip scanned whole as bytes.
		return zw, dirErr
	}
	if head >= 0 {
		return zw, w.scanZipGaps(zw, head)
	}
	return zw, nil
}

// weakSignature says whether a stream of compression c is known by so few
// header bytes that other files match them: .lzma and zlib.
func weakSignature(c compression) bool {
	return c == compressedLzma || c == compressedZlib
}

// sparse says whether hdr is a sparse file's: GNU's old format, or PAX's.
func sparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// weakNoStream says whether a, at the depth limit, is known by a weak
// signature only (see weakSignature) and is no stream after all: it does
// not decode its whole trial as one (see decodesAsStream), so there is
// nothing deeper to refuse for. 32 bytes of a GCC LTO section's output
// start as an .lzma header does, and liblzma decodes a few bytes of them
// before their end (outside attack round 20, FB2).
func (w *walker) weakNoStream(a *archived) bool {
	if a.kind != archiveStream || a.spooled != nil || !weakSignature(nestedCompression(a.data)) {
		return false
	}
	ok, err := w.decodesAsStream(nestedCompression(a.data), bytes.NewReader(a.data), trialRules{unreadable: true, overLimit: true})
	return err == nil && !ok
}
