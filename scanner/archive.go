package scanner

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Rules of the findings the scanner reports about archives it could not
// look into; their category is CategoryArchive.
const (
	// ArchiveTooDeepRule: an archive (or an encoded payload) nested deeper
	// than Limits.MaxArchiveDepth. Its bytes are scanned as they are, but
	// what it holds is not, so it refuses by default (high).
	ArchiveTooDeepRule = "ArchiveTooDeep"
	// ArchiveTooLargeRule: an archive larger than Limits.Window. Its bytes
	// are scanned as they are, in windows, but it is not unpacked; a
	// warning (low), since large jars and tarballs are common.
	ArchiveTooLargeRule = "ArchiveTooLarge"
	// ArchiveUnreadableRule: an archive that stops decoding before its
	// end (low: what was decoded is scanned, and no client decodes more),
	// or a zip member that cannot be opened at all, encrypted or of an
	// unknown method (medium: refuses together with another medium
	// indicator).
	ArchiveUnreadableRule = "ArchiveUnreadable"
)

// archiveKind is what detectArchive found at the start of a file.
type archiveKind int

const (
	notArchive    archiveKind = iota
	archiveStream             // gzip, xz, bzip2 or zstd: one stream, a tar or one file
	archiveTar                // a POSIX or GNU tar
	archiveZip                // zip and every format built on it (jar, war, whl, apk, ...)
	archiveScript             // a script that may carry base64 payloads
)

var (
	zipMagic      = []byte("PK\x03\x04")
	zipEmptyMagic = []byte("PK\x05\x06")
	ustarMagic    = []byte("ustar")
	// bzip2's first block or its end-of-stream marker follows "BZh1".."BZh9",
	// so three letters of text are not taken for bzip2.
	bzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	bzip2End   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// minBase64Run is the shortest run of base64 in a script that is decoded
// and scanned: shorter runs hide too little to be worth decoding, and
// keeping it large keeps ordinary scripts cheap.
const minBase64Run = 4 << 10

// scriptExtensions are the extensions of scripts searched for base64
// payloads even without a "#!" line.
var scriptExtensions = map[string]bool{"sh": true, "bash": true, "ksh": true, "zsh": true, "py": true, "pl": true, "rb": true}

// detectArchive says whether a file starting with head (its first bytes,
// at least its first 512 when it has them) is an archive the scanner
// looks into, by magic bytes only, so files that are none cost a few
// comparisons. size is the file's size (< 0 when unknown).
func detectArchive(it *item, head []byte, size int64) archiveKind {
	switch {
	case len(head) < 4:
		return notArchive
	case bytes.HasPrefix(head, zipMagic), bytes.HasPrefix(head, zipEmptyMagic):
		return archiveZip
	case len(head) >= 263 && bytes.Equal(head[257:262], ustarMagic) && isTar(head[:min(len(head), 2*blockSize)]):
		return archiveTar
	}
	switch detectCompression(head) {
	case compressedBzip2:
		if len(head) >= 10 && head[3] >= '1' && head[3] <= '9' &&
			(bytes.Equal(head[4:10], bzip2Block) || bytes.Equal(head[4:10], bzip2End)) {
			return archiveStream
		}
	case compressedGzip, compressedXz, compressedZstd:
		return archiveStream
	}
	if (size < 0 || size >= minBase64Run) && (bytes.HasPrefix(head, []byte("#!")) || scriptExtensions[it.ext]) {
		return archiveScript
	}
	return notArchive
}

// member is the item for content found inside it: an archive member
// named name (relative, cleaned), or a payload decoded from it. Rules see
// the member as if it were unpacked at the root ("/" + name, its own base
// name and extension, its own exec bit), so rules on names apply to it;
// findings name the whole path, "/opt/x/a.tar.gz!xmrig-6.21.0/xmrig", and
// their File is the layer's file.
func (it *item) member(name string, exec bool) item {
	base := path.Base(name)
	return item{
		path:  "/" + name,
		name:  base,
		ext:   extension(base),
		exec:  exec,
		where: it.shown() + "!" + name,
		outer: cmp.Or(it.outer, it.path),
		nest:  it.nest + 1,
	}
}

// memberName cleans an archive member's name into a relative path.
func memberName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// scanned is every byte this walk has read, scanned again or produced by
// unpacking so far: what MaxLayerBytes bounds.
func (w *walker) scanned() int64 {
	return w.count.n + w.rescanned + w.unpacked + w.unarchived
}

// unarchiveReader counts the bytes unpacking produces against
// MaxLayerBytes.
type unarchiveReader struct {
	r    io.Reader
	w    *walker
	what string
}

func (u *unarchiveReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.w.unarchived += int64(n)
	if u.w.scanned() > u.w.s.limits.MaxLayerBytes {
		return n, limitError("%s unpacks to more than what is left of MaxLayerBytes %d", u.what, u.w.s.limits.MaxLayerBytes)
	}
	return n, err
}

// contents takes what unarchive needs of a file of kind whole in data,
// before data goes to a worker that recycles it: a copy of an archive, or
// the decoded base64 payloads of a script (nil when it has none, so an
// ordinary script costs one pass and no allocation).
func contents(kind archiveKind, data []byte) *archived {
	if kind == archiveScript {
		if p := base64Payloads(data); len(p) > 0 {
			return &archived{kind: kind, payloads: p}
		}
		return nil
	}
	return &archived{kind: kind, data: bytes.Clone(data)}
}

// archived is a file to look into once it has been submitted.
type archived struct {
	kind     archiveKind
	data     []byte    // the archive, a copy
	payloads []payload // a script's decoded payloads
}

// unarchive looks into the file it (a): each member, or each decoded
// payload, is scanned as a file of its own under it (see item.member), and
// looked into in turn up to MaxArchiveDepth. Beyond that depth it reports
// ArchiveTooDeep. Every byte unpacked counts against MaxLayerBytes, every
// member against MaxFiles and MaxFileBytes; those fail the layer with
// ErrLimit. Content that cannot be decoded to its end is scanned as far as
// it decodes and reported as ArchiveUnreadable.
func (w *walker) unarchive(it item, a *archived) error {
	if a == nil {
		return nil
	}
	if it.nest >= w.s.limits.MaxArchiveDepth {
		w.archiveFinding(it, ArchiveTooDeepRule, SeverityHigh,
			fmt.Sprintf("archive or encoded payload nested more than MaxArchiveDepth %d deep, so what it holds was not scanned", w.s.limits.MaxArchiveDepth))
		return nil
	}
	kind, data, payloads := a.kind, a.data, a.payloads
	var err error
	switch kind {
	case archiveZip:
		err = w.walkZip(it, data)
	case archiveTar:
		err = w.walkMembers(it, &unarchiveReader{r: bytes.NewReader(data), w: w, what: "tar " + it.shown()})
	case archiveStream:
		err = w.walkStream(it, data)
	case archiveScript:
		for _, p := range payloads {
			child := it.member(fmt.Sprintf("base64@%d", p.offset), false)
			r := &unarchiveReader{r: bytes.NewReader(p.data), w: w, what: "base64 payload " + child.where}
			if _, err = w.scanFile(child, r, int64(len(p.data))); err != nil {
				break
			}
		}
	}
	if err == nil {
		return nil
	}
	if w.hardError(err) {
		return err
	}
	w.archiveFinding(it, ArchiveUnreadableRule, SeverityLow, "archive could not be read to its end: "+err.Error())
	return nil
}

// hardError says whether an error met while unpacking must stop the
// layer's scan (a limit, the scan's end, a worker's error) rather than be
// reported as an unreadable archive.
func (w *walker) hardError(err error) bool {
	return errors.Is(err, ErrLimit) || errors.Is(err, ErrClosed) ||
		w.st.ctx.Err() != nil || w.st.firstErr() != nil
}

// archiveFinding records a finding of CategoryArchive about it.
func (w *walker) archiveFinding(it item, rule, severity, reason string) {
	w.st.add(Finding{
		Rule:        rule,
		Category:    CategoryArchive,
		Severity:    severity,
		Description: reason,
		Path:        it.shown(),
		File:        cmp.Or(it.file(), it.path),
	})
}

// walkStream decompresses a gzip, xz, bzip2 or zstd file whole in data:
// a tar inside is walked member by member (a .tar.gz is one level), any
// other content is scanned as one file named for the compressed one
// without its extension ("xmrig.gz" holds "xmrig").
func (w *walker) walkStream(it item, data []byte) error {
	c := detectCompression(data)
	br := bufio.NewReader(bytes.NewReader(data))
	body, release, err := decompress(c, br)
	if err != nil {
		return err
	}
	defer release()
	ur := &unarchiveReader{r: zstdLimit(body), w: w, what: c.String() + " " + it.shown()}
	dr := bufio.NewReaderSize(ur, 2*blockSize)
	head, err := dr.Peek(2 * blockSize)
	if err != nil && err != io.EOF {
		return err
	}
	if isTar(head) {
		if err := w.walkMembers(it, dr); err != nil {
			return err
		}
		// Read to the end, as a layer is: what follows the tar's end
		// still counts against MaxLayerBytes, and only the end verifies
		// the stream's checksum.
		_, err := io.Copy(io.Discard, dr)
		return err
	}
	_, err = w.scanFile(it.member(decompressedName(it.name, c), it.exec), dr, -1)
	return err
}

// zstdLimit reports zstd's window limit as ErrLimit, as for layers.
func zstdLimit(r io.Reader) io.Reader { return zstdLimitReader{r} }

type zstdLimitReader struct{ r io.Reader }

func (z zstdLimitReader) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		err = limitError("zstd stream needs more than %d bytes of window: %v", zstdMaxWindow, err)
	}
	return n, err
}

// decompressedName is the name of what a compressed file named name
// holds: the name without its compression's extension, or the
// compression's name when it has none.
func decompressedName(name string, c compression) string {
	lower := strings.ToLower(name)
	for _, e := range [...]struct{ ext, then string }{
		{".tgz", ".tar"}, {".txz", ".tar"}, {".tbz2", ".tar"}, {".tzst", ".tar"},
		{".gz", ""}, {".xz", ""}, {".bz2", ""}, {".zst", ""},
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
func (w *walker) walkMembers(parent item, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := w.nextEntry(tr, parent.shown())
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var body io.Reader = tr
		size := hdr.Size
		switch hdr.Typeflag {
		case tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo, tar.TypeXGlobalHeader:
			continue
		case tar.TypeLink:
			body, size = bytes.NewReader(nil), 0
		}
		child := parent.member(memberName(hdr.Name), hdr.Mode&0o111 != 0)
		if size, err = w.countMember(child.where, size); err != nil {
			return err
		}
		if _, err := w.scanFile(child, body, size); err != nil {
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

// walkZip walks a zip whole in data (a zip is read from its central
// directory at the end, so only zips whole in memory are unpacked). Every
// member but directories and symbolic links is scanned with the exec bit
// of its Unix mode; a member that cannot be opened or read to its end is
// reported as ArchiveUnreadable and the others are still scanned.
func (w *walker) walkZip(it item, data []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("read zip directory of %s: %w", it.shown(), err)
	}
	for _, f := range zr.File {
		if err := w.st.ctx.Err(); err != nil {
			return err
		}
		mode := f.Mode()
		if mode.IsDir() || mode&fs.ModeSymlink != 0 {
			continue
		}
		child := it.member(memberName(f.Name), mode&0o111 != 0)
		size, err := w.countMember(child.where, int64(f.UncompressedSize64))
		if err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			w.archiveFinding(child, ArchiveUnreadableRule, SeverityMedium, "zip member could not be opened, so it was not scanned: "+err.Error())
			continue
		}
		_, err = w.scanFile(child, &unarchiveReader{r: rc, w: w, what: "zip member " + child.where}, size)
		rc.Close()
		switch {
		case err == nil:
		case w.hardError(err):
			return err
		default:
			// Each member is read on its own from the directory, so one
			// that is shorter than it says does not hide the others.
			w.archiveFinding(child, ArchiveUnreadableRule, SeverityLow, "zip member could not be read to its end: "+err.Error())
		}
	}
	return nil
}

// payload is a base64 run decoded from a script.
type payload struct {
	offset int
	data   []byte
}

// base64Class marks the bytes of the standard base64 alphabet (1) and the
// line breaks a run may be wrapped with (2).
var base64Class = func() (t [256]byte) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = 1
	}
	t['\n'], t['\r'] = 2, 2
	return t
}()

// base64Payloads decodes every run of at least minBase64Run base64
// characters in data, each as far as it decodes. A run is one line's
// stretch of base64 ("echo 'H4sI...' | base64 -d"), or whole lines of it
// wrapped at one width, the last one possibly shorter (a here-document);
// padding ends a run. Each decoded payload is a new slice, so data may be
// recycled once this returns.
func base64Payloads(data []byte) []payload {
	var out []payload
	for i := 0; i < len(data); {
		if base64Class[data[i]] != 1 {
			i++
			continue
		}
		start := i
		end := segmentEnd(data, i)
		width := end - start
		if (start == 0 || data[start-1] == '\n') && width%4 == 0 && data[end-1] != '=' {
			for {
				k := end
				if k < len(data) && data[k] == '\r' {
					k++
				}
				if k >= len(data) || data[k] != '\n' {
					break
				}
				k++
				m := segmentEnd(data, k)
				if m == k || m-k > width || (m < len(data) && data[m] != '\r' && data[m] != '\n') {
					break
				}
				end = m
				if m-k < width || data[m-1] == '=' {
					break
				}
			}
		}
		if end-start >= minBase64Run {
			if dec := decodeBase64Run(data[start:end]); len(dec) > 0 {
				out = append(out, payload{offset: start, data: dec})
			}
		}
		i = end
	}
	return out
}

// segmentEnd is where the stretch of base64 characters from i ends.
func segmentEnd(data []byte, i int) int {
	for i < len(data) && base64Class[data[i]] == 1 {
		i++
	}
	return i
}

// decodeBase64Run decodes run (line breaks ignored) up to its first byte
// that does not decode.
func decodeBase64Run(run []byte) []byte {
	clean := make([]byte, 0, len(run))
	for _, c := range run {
		if base64Class[c] == 1 {
			clean = append(clean, c)
		}
	}
	clean = clean[:len(clean)/4*4]
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, _ := base64.StdEncoding.Decode(dec, clean)
	return dec[:n]
}
