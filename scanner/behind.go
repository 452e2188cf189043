package scanner

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Archives behind a prefix. A self-extracting file is something the host
// runs followed by what it unpacks: a "#!" zipapp or a self-extractor
// ending in a zip (see zipAtEnd), or a script followed by a compressed
// stream. gzexe (in Debian's gzip package) writes a script that unpacks
// the gzip after its own lines with tail; makeself's default archive is
// a script followed by a .tar.gz (or .tar.bz2, .tar.xz, .tar.zst). Such a
// stream's first bytes are no magic at the file's start, so the file is
// looked into where each stream starts.

// maxBehindStreams caps the compressed streams looked into behind one
// script's first line. A script with more is reported ArchiveUnreadable
// (high): the ones after the cap are not read.
const maxBehindStreams = 64

// streamTrial is how much a candidate stream must decode to be taken for
// one: enough that bytes which only start like a stream's header (the
// three bytes of gzip's are in any large binary) fail first.
const streamTrial = 512

// behindPrefix lists what data, a whole file of kind, holds behind a
// prefix: a zip at its end, and the compressed streams behind the first
// line of a script. truncated says a script held more streams than
// maxBehindStreams.
func (w *walker) behindPrefix(data []byte, kind archiveKind) (out []*archived, truncated bool, err error) {
	if kind != archiveZip {
		if start, ok := zipAtEnd(data); ok {
			out = append(out, &archived{kind: archiveZip, data: bytes.Clone(data[start:])})
		}
	}
	if kind == archiveStream || !bytes.HasPrefix(data, []byte("#!")) {
		return out, false, nil
	}
	line := bytes.IndexByte(data, '\n')
	if line < 0 {
		return out, false, nil
	}
	var rest []byte // one copy for every stream: each is a suffix of it
	for _, off := range streamStarts(data, line+1) {
		var ok bool
		err := w.releasingBig(func() (err error) {
			ok, err = w.decodesAsStream(data[off:])
			return err
		})
		if err != nil {
			return out, false, err
		}
		if !ok {
			continue
		}
		if len(out) >= maxBehindStreams {
			return out, true, nil
		}
		if rest == nil {
			rest = bytes.Clone(data[off:])
		}
		out = append(out, &archived{kind: archiveStream, data: rest[len(rest)-(len(data)-off):],
			at: fmt.Sprintf("%v@%d", detectCompression(data[off:]), off)})
	}
	return out, false, nil
}

// streamStarts lists, in order, the offsets from from on where data holds
// the magic bytes of a gzip, xz, bzip2 or zstd stream that detectArchive
// takes for one.
func streamStarts(data []byte, from int) []int {
	var offs []int
	for _, m := range [][]byte{gzipMagic, xzMagic, bzip2Magic, zstdMagic} {
		for i := from; i < len(data); {
			j := bytes.Index(data[i:], m)
			if j < 0 {
				break
			}
			at := i + j
			if detectArchive(&item{}, data[at:min(len(data), at+2*blockSize)], -1) == archiveStream {
				offs = append(offs, at)
			}
			i = at + 1
		}
	}
	// In file order, so findings read as the file does.
	for i := 1; i < len(offs); i++ {
		for j := i; j > 0 && offs[j] < offs[j-1]; j-- {
			offs[j], offs[j-1] = offs[j-1], offs[j]
		}
	}
	return offs
}

// decodesAsStream says whether data starts with a compressed stream that
// decodes its first streamTrial bytes (or to its end) without an error.
// What the trial decodes counts against MaxLayerBytes, as unpacking does.
func (w *walker) decodesAsStream(data []byte) (bool, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	body, release, err := decompress(detectCompression(data), br, w.chargeDecoder)
	if err != nil {
		if w.hardError(err) {
			return false, err
		}
		return false, nil
	}
	defer release()
	ur := &unarchiveReader{r: body, w: w, what: "compressed stream in a script"}
	n, err := io.ReadFull(ur, make([]byte, streamTrial))
	switch {
	case err == nil, err == io.ErrUnexpectedEOF && n > 0, err == io.EOF:
		return true, nil
	case w.hardError(err):
		return false, err
	}
	return false, nil
}

// tooManyStreams reports a script whose streams behind its first line
// were not all read.
func (w *walker) tooManyStreams(it item) {
	w.archiveFinding(it, ArchiveUnreadableRule, SeverityHigh,
		fmt.Sprintf("more than %d compressed streams behind the script's first line; those after them were not read", maxBehindStreams))
}

// unarchiveAll looks into each archive of as, found in the file it (see
// behindPrefix); tooMany reports that more were not listed.
func (w *walker) unarchiveAll(it item, as []*archived, tooMany bool) error {
	for _, a := range as {
		if err := w.unarchive(it, a); err != nil {
			return err
		}
	}
	if tooMany {
		w.tooManyStreams(it)
	}
	return nil
}
