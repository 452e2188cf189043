package scanner

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Large files behind their start. A file larger than one window that is
// no archive itself is spooled to a temporary file as its windows are
// scanned, and is looked into behind its start from the spool once its
// last window is submitted, as behindPrefix looks into a file in one
// window: a zip at its end, zip entries, compressed streams and XAR
// archives behind its start, and its base64 payloads. Padding a
// self-extractor past the window hides nothing.
//
// The spool is read back in chunks of one window that overlap by
// windowOverlap. A candidate belongs to the chunk it starts in before the
// next chunk's start, so each is tried once, with at least windowOverlap
// bytes of the chunk after it to tell its format by; a stream is decoded
// from the spool, to its end however far that is. A base64 chain cut by
// a chunk's end starts the next chunk, so that it is read whole when it
// is shorter than a window.

// scanSpooled submits the large file it, spooled whole to sp, to be
// scanned as one: YARA maps the spool, so a rule's strings match together
// however far apart in the file they are, where windows would each see
// 16 MiB of it. The job holds its own descriptor of the spool.
func (w *walker) scanSpooled(it item, sp *spool) error {
	if err := w.st.acquire(); err != nil {
		return err
	}
	fd, err := syscall.Dup(int(sp.f.Fd()))
	if err != nil {
		w.st.release()
		return fmt.Errorf("%w: open the spool of %s again: %w", errSpool, sp.name, err)
	}
	it.spooled = os.NewFile(uintptr(fd), sp.name)
	return w.s.submit(&job{scan: w.st, items: []item{it}, file: it.spooled})
}

// largeText follows where a large file's text ends (see streamText) as
// its windows go by.
type largeText struct {
	end  int64 // where the text ends, or how far it runs so far
	nul  bool  // the file starts with a line of text: the text runs to its first NUL
	open bool  // the text has not ended yet
}

// start sets lt from the file's first window.
func (lt *largeText) start(data []byte) {
	lt.end = int64(streamText(data))
	lt.nul = firstLineText(data)
	lt.open = lt.end == int64(len(data))
}

// extend follows the text into b, the next bytes of the file.
func (lt *largeText) extend(b []byte) {
	if !lt.open {
		return
	}
	i := textEnd(b)
	if lt.nul {
		if i = bytes.IndexByte(b, 0); i < 0 {
			i = len(b)
		}
	}
	lt.end += int64(i)
	lt.open = i == len(b)
}

// searchSpooled looks into what the large file it, of size bytes spooled
// to sp, holds behind its start (see behindPrefix), its text ending at
// text; payloads says it is searched for base64 payloads too.
func (w *walker) searchSpooled(it item, sp *spool, size, text int64, payloads bool) error {
	return w.searchSpooledOutside(it, sp, size, text, payloads, spoolOwn{})
}

// spoolOwn is what a search of a spooled archive passes over, of what
// the archive's own reading covered: a zip's members' data and its own
// entries (zw), or a compressed file's own stream (own, see
// unarchiveBehindOwn).
type spoolOwn struct {
	zw    *zipWalk
	own   ownStream
	skip  func(off int64, c compression) bool // nil: nothing
	isZip bool                                // the spool is a zip, not read again as one
}

// zipOwn is what a search of a large zip, whose walk was zw, passes over
// (see unarchiveZipOwnBytes).
func zipOwn(zw *zipWalk) spoolOwn {
	in := zw.inMember()
	return spoolOwn{zw: zw, skip: func(off int64, _ compression) bool { return in(off) }, isZip: true}
}

// searchSpooledOutside is searchSpooled but for what o passes over.
func (w *walker) searchSpooledOutside(it item, sp *spool, size, text int64, payloads bool, o spoolOwn) error {
	skip := o.skip
	zw := o.zw
	tail := make([]byte, min(size, zipTail))
	if err := sp.readAt(tail, size-int64(len(tail))); err != nil {
		return err
	}
	var out []*archived
	var ferr error
	first := func() int64 {
		var at int64
		at, ferr = w.spoolIndex(sp, size, zipMagic)
		return at
	}
	end, atEnd := zipAtEndOf(sp, size, tail, first)
	if atEnd && (!o.isZip || end.start > 0) {
		out = append(out, &archived{kind: archiveZip, spooled: io.NewSectionReader(sp, end.start, size-end.start)})
	}
	if ferr == nil {
		ferr = sp.failed()
	}
	if ferr != nil {
		return ferr
	}
	c := &spoolChunks{w: w, sp: sp, size: size, text: text, end: end, atEnd: atEnd, payloads: payloads, out: out, skip: skip, zw: zw, own: o.own, rebased: -1}
	tooMany, err := c.search(it)
	if err == nil {
		err = w.unarchiveAll(it, c.out, tooMany, size, o.own)
	}
	if err == nil {
		// A read error is taken for a stream's end by its decoder.
		err = sp.failed()
	}
	return err
}

// spoolChunks is the state of one search of a spool, chunk by chunk.
type spoolChunks struct {
	w          *walker
	sp         *spool
	size, text int64
	end        endZip // a zip at the file's end, when atEnd: its entries are read as it lists them
	atEnd      bool
	payloads   bool
	out        []*archived
	listed     int64 // streams are listed up to there
	trials     int
	covered    int64                               // the end of the last base64 chain read
	rebased    int64                               // where a chunk was last started at a chain's start, or -1
	skip       func(off int64, c compression) bool // nil, or where no candidate is taken
	zw         *zipWalk                            // nil, or the zip whose own entries are not taken again
	own        ownStream                           // what a compressed file's own reading covered
}

// search reads the spool chunk by chunk, lists in c.out the zip entries
// and streams each chunk holds, and looks into its base64 payloads at
// once (they are read from the chunk's memory). tooMany says more
// candidates were found than maxTrials or maxListed allows.
func (c *spoolChunks) search(it item) (tooMany bool, err error) {
	buf := c.w.s.windows.get()
	defer buf.put()
	for base := int64(0); base < c.size; {
		chunk := buf.b[:min(int64(len(buf.b)), c.size-base)]
		if err := c.sp.readAt(chunk, base); err != nil {
			return false, err
		}
		end := base + int64(len(chunk))
		next := end - windowOverlap // the next chunk's candidates start from there
		if end == c.size {
			next = c.size
		}
		if tooMany, err = c.streams(chunk, base, next); err != nil || tooMany {
			return tooMany, err
		}
		// The next chunk may start before next (see payloadsIn): its
		// streams before next are listed.
		c.listed = next
		if c.payloads {
			if next, err = c.payloadsIn(it, chunk, base, next); err != nil {
				return false, err
			}
		}
		base = next
	}
	return false, nil
}

// streams appends to c.out the zip entries and compressed streams that
// start in chunk, the spool's bytes from base on, before next.
func (c *spoolChunks) streams(chunk []byte, base, next int64) (tooMany bool, err error) {
	from := int(max(0, c.listed-base))
	if base == 0 {
		from = 1 // the file's own start is no stream behind it
	}
	mine := func(off int, kind compression) bool {
		return off >= from && base+int64(off) < next && (c.skip == nil || !c.skip(base+int64(off), kind))
	}
	for _, at := range zipEntryStarts(chunk, maxListed(c.size)) {
		abs := base + int64(at)
		if c.zw != nil && c.zw.entryAt(chunk[at:], abs) {
			continue
		}
		if mine(at, uncompressed) && len(c.out) < maxListed(c.size) && (!c.atEnd || !c.end.lists(chunk[at:], abs)) {
			c.out = append(c.out, c.spooled(archiveZip, abs, fmt.Sprintf("zip@%d", abs)))
		}
	}
	for _, r := range rawArchiveStarts(chunk, from, maxListed(c.size)) {
		if c.own.whole != uncompressed {
			break // see appendRawArchives
		}
		if abs := base + int64(r.at); mine(r.at, uncompressed) && len(c.out) < maxListed(c.size) {
			c.out = append(c.out, c.spooled(r.kind, abs, fmt.Sprintf("%s@%d", r.name, abs)))
		}
	}
	text := int(max(-2, min(c.text-base, int64(len(chunk)))))
	for _, off := range streamsIn(chunk, from, text) {
		if !mine(off, nestedCompression(chunk[off:])) {
			continue
		}
		if c.trials++; c.trials > maxTrials(c.size) {
			return true, nil
		}
		abs := base + int64(off)
		ok, err := c.w.streamAt(chunk[off:], io.NewSectionReader(c.sp, abs, c.size-abs), abs, c.text)
		if err == nil {
			err = c.sp.failed()
		}
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		if len(c.out) >= maxListed(c.size) {
			return true, nil
		}
		c.out = append(c.out, c.spooled(archiveStream, abs, fmt.Sprintf("%v@%d", nestedCompression(chunk[off:]), abs)))
	}
	return false, nil
}

// spooled is the archive of kind that starts at off in the spool.
func (c *spoolChunks) spooled(kind archiveKind, off int64, at string) *archived {
	return &archived{kind: kind, spooled: io.NewSectionReader(c.sp, off, c.size-off), at: at, off: off}
}

// payloadsIn looks into the base64 payloads of chunk, the spool's bytes
// from base on, whose chains start before next and after the last chain
// read. A chain that runs to within windowOverlap/2 of the chunk's end,
// when the file goes on, is read with the next chunk, which starts with
// it: the returned start of the next chunk. One that started the chunk,
// longer than a window, is decoded from the spool (see longRun).
func (c *spoolChunks) payloadsIn(it item, chunk []byte, base, next int64) (int64, error) {
	var keep []payload
	end := base + int64(len(chunk))
	// A chain's payloads (its runs, each at four alignments) share its
	// extent: only chains read with the chunks before, or decoded by
	// longRun, are passed over.
	covered := c.covered
	for _, p := range base64Payloads(chunk) {
		from, to := base+int64(p.from), base+int64(p.to)
		if from < covered {
			continue
		}
		if from >= next {
			break // the next chunk's
		}
		if c.skip != nil && (p.unescaped || c.skip(from, uncompressed)) {
			continue
		}
		if end < c.size && to > end-windowOverlap/2 && it.nest < c.w.s.limits.MaxArchiveDepth {
			// A chunk is started at a chain's start once: should its
			// finder place the chain a little later there, the chain is
			// read from where it finds it, not chunk after chunk.
			if from > base && base != c.rebased {
				next, c.rebased = from, from
				break
			}
			at := from
			if p.enc != encBase64URL && basencs[p.enc] != nil {
				at = max(from, base+int64(runStart(chunk)))
			}
			n, err := c.longRun(it, at, p.enc, p.quoted)
			if covered = from + n; err != nil {
				return next, err
			}
			c.covered = max(c.covered, covered)
			continue
		}
		c.covered = max(c.covered, to)
		if p.unescaped {
			p.span += int(base)
		} else {
			p.offset += int(base)
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		return next, nil
	}
	return next, c.w.unarchive(it, &archived{kind: archivePayloads, payloads: keep})
}

// spoolIndex is where m first occurs in the spool of size bytes, or -1.
func (w *walker) spoolIndex(sp *spool, size int64, m []byte) (int64, error) {
	buf := w.s.windows.get()
	defer buf.put()
	for base := int64(0); base < size; base += int64(len(buf.b) - len(m)) {
		chunk := buf.b[:min(int64(len(buf.b)), size-base)]
		if err := sp.readAt(chunk, base); err != nil {
			return -1, err
		}
		if i := bytes.Index(chunk, m); i >= 0 {
			return base + int64(i), nil
		}
		if base+int64(len(chunk)) == size {
			break
		}
	}
	return -1, nil
}
