package scanner

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/zlib"
)

// Archives behind a prefix. A self-extracting file is something the host
// runs followed by what it unpacks: a "#!" zipapp or a self-extractor
// ending in a zip (see zipAtEnd), or a script or a program followed by a
// compressed stream. gzexe (in Debian's gzip package) writes a script
// that unpacks the gzip after its own lines with tail; makeself's default
// archive is a script followed by a .tar.gz (or .tar.bz2, .tar.xz,
// .tar.zst, .lzma); a script run with sh needs no "#!", and a program can
// read what follows it from /proc/self/exe. Such a stream's first bytes
// are no magic at the file's start, so every file that is no archive
// itself is looked into where each stream starts.

// maxBehindStreams caps the compressed streams looked into in one file
// behind its start, or one for every 64 KiB of a larger file than 4 MiB
// (see maxBehind). A file with more is reported ArchiveUnreadable
// (high): the ones after the cap are not read.
const maxBehindStreams = 64

// maxListed caps the candidates listed in a file of size bytes: each is
// tried, and those a stream before them was read on into are not read
// again (see unarchiveAll), so a file may list many more than it reads
// (a Chromium resource pack of 20 MB starts 4,850 gzip members). A trial
// costs about 15 µs, so at one per 2 KiB a crafted file costs about what
// YARA takes to scan it.
func maxListed(size int64) int {
	return int(max(maxBehindStreams, size/2048))
}

// maxTrials caps the candidates tried in a file of size bytes: each
// costs a pooled decoder's reset and a trial decode, about 5 µs, so bytes
// crafted to start like a stream every few bytes would otherwise cost
// far more than scanning them (0.8 s a MiB at one every 16 bytes, before
// the decoders were pooled and the cap set). At one per 256 bytes a
// crafted file costs about 20 ms a MiB; the floor is for text, where
// every "x^" of a formula is a zlib header (Go's crc32_table_ppc64le.s:
// 1,722 in 116 KB). Of this machine's files over 1 MiB, a Chromium
// resource pack comes nearest, at 6 % of it (4,979 in 20 MB).
func maxTrials(size int64) int {
	return int(max(4096, size/256))
}

// maxBehind is the cap for a file of size bytes. Go programs carry a
// gzip stream for each protocol buffer file they were built with (a
// registered descriptor): 65 in containerd's 45 MiB, 98 in docker's 43.
// Each stream read costs what decoding it does, counted against
// MaxLayerBytes, and a decoder's set-up.
func maxBehind(size int64) int {
	return int(max(maxBehindStreams, size/(64<<10)))
}

// streamTrial is how much a candidate stream must decode to be taken for
// one: enough that bytes which only start like a stream's header (the
// three bytes of gzip's are in any large binary) fail first.
const streamTrial = 512

// behindPrefix lists what data, a whole file of kind, holds behind a
// prefix: a zip at its end, and the compressed streams after its first
// byte, when the file is no archive itself. truncated says it held more
// candidates than maxTrials or maxListed allows.
func (w *walker) behindPrefix(data []byte, kind archiveKind) (out []*archived, truncated bool, err error) {
	var end endZip
	var atEnd bool
	if kind != archiveZip {
		if end, atEnd = zipAtEnd(data); atEnd {
			out = append(out, &archived{kind: archiveZip, data: bytes.Clone(data[end.start:])})
		}
	}
	if kind != notArchive && kind != archivePayloads && kind != archiveISO {
		// An archive's own members are looked into as such (and a
		// compressed file is searched behind its start once its own
		// stream is read, see unarchiveOwn). An ISO image is searched
		// as any file is: its files are walked, and what lies between
		// them is cut out with tail -c.
		return out, false, nil
	}
	more, truncated, err := w.streamsBehind(data, end, atEnd, nil)
	return appendRawArchives(append(out, more...), data), truncated, err
}

// appendPayloads appends to out the base64 payloads data, a compressed
// file or what follows an archive's end, holds.
func appendPayloads(out []*archived, data []byte) []*archived {
	if len(data) < minBase64Run {
		return out
	}
	if a := contents(archivePayloads, data); a != nil {
		out = append(out, a)
	}
	return out
}

// streamsBehind lists the zip entries and compressed streams after data's
// first byte (see behindPrefix), but for the entries end, the zip at its
// end if atEnd, lists, and the streams covered says were read (nil for
// none): those are neither tried nor listed.
func (w *walker) streamsBehind(data []byte, end endZip, atEnd bool, covered func(off int64, c compression) bool) (out []*archived, truncated bool, err error) {
	var rest []byte // one copy for every stream: each is a suffix of it
	for _, at := range zipEntryStarts(data, maxListed(int64(len(data)))) {
		// The entries of a zip at the end are read as it lists them.
		if !atEnd || !end.lists(data[at:], int64(at)) {
			out = append(out, &archived{kind: archiveZip, data: suffix(&rest, data, at), off: int64(at), at: fmt.Sprintf("zip@%d", at)})
		}
	}
	more, truncated, err := w.streamsOf(data, covered)
	return append(out, more...), truncated, err
}

// streamsOf lists the compressed streams after data's first byte (see
// behindPrefix) that covered, if not nil, does not say were read.
func (w *walker) streamsOf(data []byte, covered func(off int64, c compression) bool) (out []*archived, truncated bool, err error) {
	text := streamText(data)
	return w.streamsAt(data, streamsIn(data, 1, text), text, covered)
}

// streamsAt is streamsOf for the candidates offs, in order, of data, whose
// text ends at text.
func (w *walker) streamsAt(data []byte, offs []int, text int, covered func(off int64, c compression) bool) (out []*archived, truncated bool, err error) {
	var rest []byte // one copy for every stream: each is a suffix of it
	tried := 0
	for _, off := range offs {
		if covered != nil && covered(int64(off), nestedCompression(data[off:])) {
			continue
		}
		if tried++; tried > maxTrials(int64(len(data))) {
			return out, true, nil
		}
		ok, err := w.streamAt(data[off:], bytes.NewReader(data[off:]), int64(off), int64(text))
		if err != nil {
			return out, false, err
		}
		if !ok {
			continue
		}
		if len(out) >= maxListed(int64(len(data))) {
			return out, true, nil
		}
		out = append(out, &archived{kind: archiveStream, data: suffix(&rest, data, off), off: int64(off),
			at: fmt.Sprintf("%v@%d", nestedCompression(data[off:]), off)})
	}
	return out, false, nil
}

// streamsIn lists, in order, where the streams behind data's start may
// start from from on: streamStarts, and a XAR archive's zlib streams.
func streamsIn(data []byte, from, text int) []int {
	offs := streamStarts(data, from, text)
	if at := xarStart(data); at >= 0 {
		offs = append(offs, zlibStarts(data, at)...)
		slices.Sort(offs)
		offs = slices.Compact(offs)
	}
	return offs
}

// streamStarts lists, in order, the offsets from from on where data holds
// the magic bytes of a stream that detectArchive takes for one (see
// streamMagics); text is where the file's text ends (see streamText).
func streamStarts(data []byte, from, text int) []int {
	var offs []int
	for _, set := range magicSets {
		region := data
		if set.textOnly { // zlib: behind text, or in a XAR (see zlibStarts)
			region = data[:min(len(data), text+2)]
		}
		set.pairs.Each(region, func(k int) {
			for _, sm := range set.magics {
				if data[k] == sm.m[sm.anchor] && data[k+1] == sm.m[sm.anchor+1] {
					offs = sm.appendAt(offs, data, k, from, text)
				}
			}
		})
	}
	for at := max(from, text-textOnlyReach); at <= text && at < len(data); at++ {
		for _, sm := range streamMagics {
			if sm.set == noSet {
				offs = sm.appendAt(offs, data, at+sm.back+sm.anchor, from, text)
			}
		}
	}
	slices.Sort(offs) // in file order, so findings read as the file does
	return offs
}

// streamText is how far into data a stream is behind text (see
// behindPrefix): to the first control byte (see textEnd), or, in a file
// whose first line is a line of text, as a script's is, to its first NUL.
// A script may hold control bytes (a terminal's escapes) and still be
// run by sh, which reads no NUL; a program or binary data starts with
// control bytes or a NUL.
func streamText(data []byte) int {
	if firstLineText(data) {
		// The first control byte is never after the first NUL.
		if nul := bytes.IndexByte(data, 0); nul >= 0 {
			return nul
		}
		return len(data)
	}
	return textEnd(data)
}

// appendAt appends the start of sm's stream to offs when its anchor byte
// at data[k] is part of its magic and detectArchive takes what follows
// for a stream.
func (sm streamMagic) appendAt(offs []int, data []byte, k, from, text int) []int {
	p := k - sm.anchor
	at := p - sm.back
	if at < from || p+len(sm.m) > len(data) || sm.textOnly && at > text || !bytes.Equal(data[p:p+len(sm.m)], sm.m) {
		return offs
	}
	if !streamStart(data[at:min(len(data), at+2*blockSize)]) {
		return offs
	}
	return append(offs, at)
}

// firstLineText says whether data, a file's start, starts with a line of
// text, as a script does (see streamText).
func firstLineText(data []byte) bool {
	line := data[:min(len(data), 4096)]
	i := bytes.IndexByte(line, '\n')
	return i >= 2 && textEnd(line[:i]) == i && bytes.IndexByte(line[:i], '\f') < 0
}

// streamAt says whether the candidate stream at off in its file, whose
// bytes from there on src reads and head starts with, is one to look
// into, text being where the file's text ends (see streamText). A stream
// pullgate cannot decode is taken for one (and refused) behind text, a
// script's lines, where its magic number is no accident, and when it is
// xz, whose headers carry checksums; programs that handle LZ4, lzip or
// zstd carry their magic numbers followed by anything, and other binary
// data (a profile's protobuf) holds compress(1)'s by chance.
func (w *walker) streamAt(head []byte, src io.Reader, off, text int64) (ok bool, err error) {
	c := nestedCompression(head)
	loud := off <= text || c == compressedXz
	err = w.releasingBig(func() (err error) {
		ok, err = w.decodesAsStream(c, src, trialRules{unreadable: loud, overLimit: off <= text, partial: off <= text})
		return err
	})
	return ok, err
}

// trialRules are what, besides decoding its first streamTrial bytes (or
// to its end), makes a candidate a stream (see decodesAsStream).
type trialRules struct {
	unreadable bool // a stream pullgate cannot decode at all
	overLimit  bool // one that asks for more than the decoders allow (unpacked, it stops the layer at that limit, as at a file's start)
	// partial: one of a weak format (compress(1), LZ4, .lzma), whose
	// decoders decode some bytes of almost anything after their short
	// headers, that decodes some bytes and then fails; it is one behind
	// text, a script's lines, where its header is no accident.
	partial bool
}

// decodesAsStream says whether data starts with a compressed stream that
// decodes its first streamTrial bytes (or to its end) without an error,
// or is one by rules. What the trial decodes counts against
// MaxLayerBytes, as unpacking does.
func (w *walker) decodesAsStream(c compression, src io.Reader, rules trialRules) (bool, error) {
	br := bufio.NewReader(src)
	body, release, err := decompressTrial(c, br, w.chargeDecoder)
	switch {
	case err == nil:
	case w.decoderLimit(err):
		return rules.overLimit, nil
	case w.hardError(err):
		return false, err
	case errors.Is(err, errUnsupported):
		// A stream a host's tools unpack and pullgate cannot: looked
		// into, it is refused (see unreadableSeverity).
		return rules.unreadable, nil
	default:
		return false, nil
	}
	defer release()
	ur := &unarchiveReader{r: decoderErrors(body), w: w, what: "compressed stream behind a prefix"}
	n, err := io.ReadFull(ur, make([]byte, streamTrial))
	switch {
	case err == nil, err == io.ErrUnexpectedEOF && n > 0, err == io.EOF:
		return true, nil
	case errors.Is(err, errUnsupported):
		return rules.unreadable, nil
	case w.decoderLimit(err):
		return rules.overLimit, nil
	case w.hardError(err):
		return false, err
	}
	// A stream that decodes some bytes and then fails (other data after
	// it, a cut or wrong checksum) is one: gzip -d and xz -d write what
	// they decoded before they complain, and a pipe to a shell runs it.
	// compress(1), LZ4 and .lzma decode some bytes of almost anything
	// after their short headers, so unless rules.partial they must decode
	// the whole trial or reach their end (an .lzma file in a XAR archive,
	// followed by the next); zlib, whose header is two letters of text ("x^" in
	// a formula), must everywhere, or reach its end (a wrong Adler-32
	// after its data, which pigz -dz and zlib-flate write out).
	weak := c == compressedLZW || c == compressedLZ4 || c == compressedLzma || c == compressedPack
	if c == compressedZlib && !errors.Is(err, zlib.ErrChecksum) || !rules.partial && weak && !errors.Is(err, errAfterTheEnd) {
		return false, nil
	}
	return n > 0, nil
}

// decoderLimit says whether err is a decoder's own limit (a zstd window or
// an xz dictionary over 64 MiB), not the layer's: bytes that only look
// like such a stream's header are common in programs that carry the
// decoders' tables, so a candidate behind binary bytes that asks for
// more is taken for other bytes (docs/detection.md), where the same
// stream at a file's start or behind text is refused.
func (w *walker) decoderLimit(err error) bool {
	return errors.Is(err, ErrLimit) && w.scanned() <= w.s.limits.MaxLayerBytes && w.st.ctx.Err() == nil
}

// textEnd is where data stops being text: its first control byte other
// than a tab, a line break, a carriage return or a form feed (a NUL, or
// the first byte of a compressed stream's header, or of a program).
func textEnd(data []byte) int {
	for i, c := range data {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' || c == 0x7f {
			return i
		}
	}
	return len(data)
}

// suffix is data[off:] in *rest, a copy of a suffix of data made on first
// use: every stream and zip found behind a prefix is a suffix of it.
func suffix(rest *[]byte, data []byte, off int) []byte {
	if len(*rest) < len(data)-off {
		*rest = bytes.Clone(data[off:])
	}
	return (*rest)[len(*rest)-(len(data)-off):]
}
