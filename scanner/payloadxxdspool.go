package scanner

import (
	"bufio"
	"fmt"
	"io"
)

// Dumps longer than a window, read from the file's spool (see longRun).

// xxdDumpRun reads a dump longer than a window from the spool (see
// longRun) as appendXxdDumps reads one within a window, the reading skip
// names: its lines up to the last one at most maxDumpGap after the one
// before, decoded as xxd -r decodes them, their bytes placed in a span
// of maxXxdSpan (xxdSpan).
type xxdDumpRun struct {
	r    *bufio.Reader
	x    *xxdRevert
	span xxdSpan
	segs xxdSegments // what the last line wrote, to place
	next int         // the first of segs.segs not yet placed
	// pending is the lines since the dump's last, fed if a dump's line
	// follows.
	pending []byte
	midLine bool // the last piece read ended inside its line
	dump    bool // the line being read is a dump's
	n, read int64
	ended   bool
	err     error
	name    string
}

// newXxdDumpRun is the run of way's reading (see xxdReadings), and its
// name: name, the run's, with the reading's.
func newXxdDumpRun(r *bufio.Reader, way int, name string) (*xxdDumpRun, string) {
	skip := xxdReadings[way%len(xxdReadings)]
	if skip > 0 {
		name += fmt.Sprintf("+%d", skip)
	}
	d := &xxdDumpRun{r: r, name: name}
	cols, pipe := xxdWay(skip)
	d.x = newXxdRevert(cols, pipe, &d.segs)
	return d, name
}

// taken is how many bytes of its reader the run took.
func (d *xxdDumpRun) taken() int64 { return d.n }

func (d *xxdDumpRun) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if k := d.span.emit(p); k > 0 {
			return k, nil
		}
		if d.err != nil {
			return 0, d.err
		}
		if d.next < len(d.segs.segs) {
			g := d.segs.segs[d.next]
			if d.err = d.span.place(g.off, d.segs.raw[g.at:g.at+g.n], d.name); d.err == nil && !d.span.emitting() {
				d.next++
			}
			continue
		}
		if d.ended {
			if d.span.finish() {
				continue
			}
			return 0, io.EOF
		}
		d.segs.raw, d.segs.segs, d.next = d.segs.raw[:0], d.segs.segs[:0], 0
		d.line()
	}
}

// line reads the next line, or the next piece of a line longer than the
// reader's buffer, and feeds it when the dump goes on there.
func (d *xxdDumpRun) line() {
	b, err := d.r.ReadSlice('\n')
	if !d.midLine {
		d.dump = dumpLineAt(b)
	}
	d.midLine = err == bufio.ErrBufferFull
	d.read += int64(len(b))
	switch {
	case len(b) == 0:
	case d.dump:
		d.x.feed(d.pending)
		d.x.feed(b)
		d.x.flush()
		d.pending = d.pending[:0]
		d.n = d.read
	case len(d.pending)+len(b) > maxDumpGap:
		d.ended = true
	default:
		d.pending = append(d.pending, b...)
	}
	if err != nil && err != bufio.ErrBufferFull {
		d.ended = true
	}
}

// xxdSpan places the bytes a dump writes, as they come, in a span of
// maxXxdSpan: ring holds the output from emitted on to hi, each byte at
// its offset modulo the ring's size (which doubles from 64 KiB as the
// span held grows, up to maxXxdSpan), and zeros elsewhere. A byte past
// the span moves it on, the output before it given out first; a byte
// before it, once some is given out, is an error. A gap of more than
// maxXxdSpan is left out: dropped is what was, subtracted from the
// offsets after it.
type xxdSpan struct {
	ring          []byte
	started, gone bool // gone: some of the output was given out
	emitted, hi   int64
	emitTo        int64 // give out up to there before placing more
	dropped       int64
}

func (s *xxdSpan) emitting() bool { return s.emitted < s.emitTo }

// place writes b at off, or sets the output to give out first.
func (s *xxdSpan) place(off int64, b []byte, name string) error {
	m := off - s.dropped
	if !s.started {
		s.started, s.emitted, s.hi, s.emitTo = true, m, m, m
	}
	if m < s.emitted {
		if s.gone || s.hi-m > maxXxdSpan {
			return limitError("%s goes back to offset %d, before the %d MiB of its output held to place its lines (its lines out of order over more than that)",
				name, off, maxXxdSpan>>20)
		}
		s.emitted, s.emitTo = m, m
	}
	if m-s.hi > maxXxdSpan {
		if s.emitted < s.hi {
			s.emitTo = s.hi // give out what is held, then leave the gap out
			return nil
		}
		s.dropped += m - s.hi
		m = s.hi
	}
	end := m + int64(len(b))
	if end-s.emitted > maxXxdSpan {
		s.emitTo = end - maxXxdSpan
		return nil
	}
	s.grow(max(end, s.hi) - s.emitted)
	size := int64(len(s.ring))
	for i := 0; i < len(b); {
		i += copy(s.ring[(m+int64(i))%size:], b[i:])
	}
	s.hi = max(s.hi, end)
	return nil
}

// grow makes the ring hold need bytes, moving what it holds.
func (s *xxdSpan) grow(need int64) {
	n := max(64<<10, int64(len(s.ring)))
	for n < need {
		n *= 2
	}
	if n == int64(len(s.ring)) {
		return
	}
	ring, old := make([]byte, n), int64(len(s.ring))
	for x := s.emitted; x < s.hi; {
		from, to := x%old, x%n
		k := min(old-from, n-to, s.hi-x)
		copy(ring[to:to+k], s.ring[from:from+k])
		x += k
	}
	s.ring = ring
}

// emit gives out the output up to emitTo, zeros past hi, into p.
func (s *xxdSpan) emit(p []byte) int {
	k := int(min(int64(len(p)), s.emitTo-s.emitted))
	size := int64(len(s.ring))
	for i := 0; i < k; {
		slot := (s.emitted + int64(i)) % size
		n := copy(p[i:k], s.ring[slot:])
		clear(s.ring[slot : slot+int64(n)])
		i += n
	}
	if k > 0 {
		s.emitted += int64(k)
		s.hi = max(s.hi, s.emitted)
		s.gone = true
	}
	return k
}

// finish sets all that is held to be given out, and says whether there
// is any.
func (s *xxdSpan) finish() bool {
	s.emitTo = s.hi
	return s.emitting()
}
