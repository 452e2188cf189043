package scanner

import (
	"bytes"
	"cmp"
	"fmt"
	"sort"
	"strings"
)

// A tar's own bytes. tar x writes out its members' bodies and nothing
// else: not its header blocks (nor the PAX records and GNU long names
// archive/tar reads as part of a header), not the padding after each
// body. But tail -c cuts a stream, a zip entry or base64 out of them as
// readily as out of any file (outside attack round 19, left). So the
// walk of a tar inside a file keeps them as it reads (tarOwn), with the
// first ownContext bytes of each body after them, and they are searched
// as a zip's own bytes are (see unarchiveZipOwnBytes): what starts in a
// body is the body's, looked into with it, and what starts outside one
// is looked into under the tar, named by its offset in the tar. A stream
// that starts in a header and runs on into the body decodes as
// tail -c | gzip -dc decodes it, as far as the context kept.
//
// A tar that is the file itself, in memory or in windows, was scanned as
// bytes already; one read out of a compressed file (a .tar.gz) was not,
// so its own bytes outside bodies are scanned as bytes too.

// ownContext is how much of a body is kept after the bytes before it,
// and how much is kept past where a search stops trying candidates (see
// searchTarOwn): a candidate is always tried with at least that much of
// what follows it, and with all of it when it lies in one member's
// headers (each PAX record or long name at most 1 MiB, see
// skipBadHeader).
const ownContext = 64 << 10

// ownFlush is how many bytes are kept before they are searched, between
// two entries; ownMax is how many one entry's headers may bring before
// the walk stops: archive/tar reads any number of PAX and long-name
// headers before an entry, and what they hold must be kept whole to be
// searched.
const (
	ownFlush = 1 << 20
	ownMax   = 16 << 20
)

// tarOwn keeps a tar's own bytes as its walk reads them.
type tarOwn struct {
	buf  []byte
	runs []ownRun // where the runs of buf come from, in order
	off  int64    // where in the tar the next byte read is
	// inBody is set while a member's body is read; ctxLeft is how much
	// of it is still kept.
	inBody  bool
	ctxLeft int
	// paused is set while the walk skips to the next header (resync):
	// what it passes over is scanned as a file of its own.
	paused bool
	err    error // set once more than ownMax is kept
}

// ownRun is a run of tarOwn.buf: from at in buf, read at off in the tar,
// the start of a body or not.
type ownRun struct {
	at   int
	off  int64
	body bool
}

// add keeps what of p, the next bytes the walk read, is kept.
func (o *tarOwn) add(p []byte) {
	switch {
	case o.paused:
	case o.inBody:
		if n := min(len(p), o.ctxLeft); n > 0 {
			o.keep(p[:n], true)
			o.ctxLeft -= n
		}
	default:
		o.keep(p, false)
		if len(o.buf) > ownFlush+ownMax && o.err == nil {
			o.err = unsupportedError("tar headers run on for more than %d MiB with no entry between them", ownMax>>20)
		}
	}
	o.off += int64(len(p))
}

func (o *tarOwn) keep(p []byte, body bool) {
	if len(p) == 0 {
		return
	}
	if n := len(o.runs); n == 0 || o.runs[n-1].body != body ||
		o.runs[n-1].off+int64(len(o.buf)-o.runs[n-1].at) != o.off {
		o.runs = append(o.runs, ownRun{at: len(o.buf), off: o.off, body: body})
	}
	o.buf = append(o.buf, p...)
}

// keepRead keeps p, the last bytes read, read while paused: the header a
// resync goes on from.
func (o *tarOwn) keepRead(p []byte) {
	o.off -= int64(len(p))
	o.keep(p, false)
	o.off += int64(len(p))
}

// body marks what read does, reading a member's body: of it only the
// context is kept.
func (o *tarOwn) body(read func() error) error {
	o.inBody, o.ctxLeft = true, ownContext
	defer func() { o.inBody = false }()
	return read()
}

// run is the run buf[at] is in.
func (o *tarOwn) run(at int) ownRun {
	i := sort.Search(len(o.runs), func(i int) bool { return o.runs[i].at > at })
	return o.runs[max(i-1, 0)]
}

// gap is where, from buf[at] on, buf's bytes stop following each other
// in the tar: after a body cut to its context, or at buf's end when the
// tar goes on (not final); -1 when they follow to the tar's end.
func (o *tarOwn) gap(at int, final bool) int {
	i := sort.Search(len(o.runs), func(i int) bool { return o.runs[i].at > at })
	for i = max(i-1, 0); i+1 < len(o.runs); i++ {
		r, n := o.runs[i], o.runs[i+1]
		if r.off+int64(n.at-r.at) != n.off {
			return n.at
		}
	}
	if final {
		return -1
	}
	return len(o.buf)
}

// cutError is the error for what at names, found in a tar's own bytes,
// which runs on past the bytes kept to search them: refused, as what
// pullgate cannot read is.
func cutError(at string) error {
	return unsupportedError("%s, in the tar's headers or padding, runs on past the %d KiB after them kept to read it", at, ownContext>>10)
}

// tarOff is where in the tar buf[at] was read.
func (o *tarOwn) tarOff(at int64) int64 {
	r := o.run(int(at))
	return r.off + at - int64(r.at)
}

// outside is the bytes of buf before limit outside bodies, joined.
func (o *tarOwn) outside(limit int) []byte {
	var out []byte
	for i, r := range o.runs {
		end := len(o.buf)
		if i+1 < len(o.runs) {
			end = o.runs[i+1].at
		}
		if !r.body && r.at < limit {
			out = append(out, o.buf[r.at:min(end, limit)]...)
		}
	}
	return out
}

// keepFrom drops what buf holds before from.
func (o *tarOwn) keepFrom(from int) {
	var runs []ownRun
	for i, r := range o.runs {
		end := len(o.buf)
		if i+1 < len(o.runs) {
			end = o.runs[i+1].at
		}
		if end <= from {
			continue
		}
		if r.at < from {
			r.off += int64(from - r.at)
			r.at = from
		}
		r.at -= from
		runs = append(runs, r)
	}
	o.runs = runs
	o.buf = append(o.buf[:0], o.buf[from:]...)
}

// searchTarOwn looks into what o kept of a tar: the streams, zip entries
// and base64 payloads that start outside its bodies are looked into under
// own, named by their offset in the tar. When scan is set (a tar read out
// of a compressed file), the bytes outside bodies are also scanned as
// bytes, as own. Unless final, it does so only once ownFlush bytes are
// kept, and tries no candidate in the last ownContext of them: those are
// kept, with the byte before them, which a search never tries (see
// streamsOf), for the next search.
func (w *walker) searchTarOwn(own item, o *tarOwn, scan, final bool) error {
	data := o.buf
	limit := len(data)
	if !final {
		if len(data) < ownFlush {
			return nil
		}
		limit -= ownContext
	}
	if limit <= 1 {
		return nil
	}
	own.base = 0
	if scan {
		hdrs := own
		hdrs.opaque = true
		out := o.outside(limit)
		if _, err := w.scanFile(hdrs, bytes.NewReader(out), int64(len(out))); err != nil {
			return err
		}
	}
	as, tooMany, err := w.ownCandidates(data, o, limit, final)
	if err != nil {
		return err
	}
	if err := w.unarchiveAll(own, as, tooMany, int64(len(data)), ownStream{}); err != nil {
		return err
	}
	o.keepFrom(limit - 1)
	return nil
}

// ownCandidates lists the streams, zip entries and base64 payloads that
// start before limit in data, o's bytes, outside bodies: only the runs
// outside bodies are searched for them, each with what follows it, as far
// as a header's magic (for streams and zip entries) or a chain of base64
// that goes on into the body. A base64 payload is at least minBase64Run
// long and no chain of one runs through a NUL, so a shorter run that
// ends in a NUL, as a header block and the padding after a body do, is
// not probed for base64.
func (w *walker) ownCandidates(data []byte, o *tarOwn, limit int, final bool) (as []*archived, tooMany bool, err error) {
	text := streamText(data)
	var offs []int
	var zips []*archived
	var payloads []payload
	for i, r := range o.runs {
		end := len(data)
		if i+1 < len(o.runs) {
			end = o.runs[i+1].at
		}
		end = min(end, limit)
		if r.body || r.at >= end {
			continue
		}
		sub := data[r.at:min(len(data), end+2*blockSize)]
		// The tar's first byte too: a tar header may start with a gzip
		// header whose extra field takes in the rest of its block, and
		// gzip -dc unpacks the member's body after it.
		for _, k := range streamStarts(sub, 0, max(text-r.at, -2)) {
			if k < end-r.at {
				offs = append(offs, r.at+k)
			}
		}
		for _, k := range zipEntryStarts(sub, maxListed(int64(len(data)))) {
			if at := r.at + k; k < end-r.at && at > 0 {
				zips = append(zips, &archived{kind: archiveZip, data: data[at:], off: int64(at), at: fmt.Sprintf("zip@%d", at)})
			}
		}
		if end-r.at >= minBase64Run || data[end-1] != 0 {
			gap := o.gap(r.at, final)
			sub := data[r.at:cmp.Or(max(gap, 0), len(data))]
			if a := contents(archivePayloads, sub); a != nil {
				for _, p := range a.payloads {
					if p.offset += r.at; p.unescaped || p.offset >= end {
						continue
					}
					if gap >= 0 && p.to == len(sub) {
						return nil, false, cutError(fmt.Sprintf("base64@%d", o.tarOff(int64(p.offset))))
					}
					p.offset = int(o.tarOff(int64(p.offset)))
					payloads = append(payloads, p)
				}
			}
		}
	}
	as, tooMany, err = w.streamsAt(data, offs, text, nil)
	as = append(as, zips...)
	for _, a := range as {
		if gap := o.gap(int(a.off), final); gap >= 0 {
			// Read as far as its bytes follow each other in the tar.
			a.data, a.cut = data[a.off:gap], true
		}
		a.at = strings.TrimSuffix(a.at, fmt.Sprintf("@%d", a.off)) + fmt.Sprintf("@%d", o.tarOff(a.off))
	}
	if len(payloads) > 0 {
		as = append(as, &archived{kind: archivePayloads, payloads: payloads})
	}
	return as, tooMany, err
}

// sparseBody reads a sparse member's body with read, and searches its
// fragments as they lie in the tar, back to back, where tail -c reads
// across them and the file tar x writes has holes between them (outside
// attack round 20, F5): they are spooled as they are read and searched
// behind their start as a large file is, what is found named under own
// by its offset in the tar. Kept as the tar's own bytes instead, a
// sparse member over 16 MiB was refused (round 20b, FB1).
func (w *walker) sparseBody(own item, cr *tarCounter, read func() error) error {
	sp, err := newSpool(own.shown())
	if err != nil {
		return err
	}
	defer sp.close()
	// With the byte before them: a stream at their start is searched
	// behind the spool's start, never at it.
	if len(cr.last) == 0 {
		return cr.own.body(read)
	}
	if err := sp.write(cr.last[len(cr.last)-1:]); err != nil {
		return err
	}
	start := cr.n - 1
	cr.tee = sp
	err = cr.own.body(read)
	cr.tee = nil
	if err = cmp.Or(cr.teeErr, err); err != nil {
		return err
	}
	size := cr.n - start
	if size < 2 {
		return nil
	}
	head := make([]byte, min(size, 4096))
	if err := sp.readAt(head, 0); err != nil {
		return err
	}
	own.base = start
	return w.searchSpooled(own, sp, size, int64(streamText(head)), true)
}
