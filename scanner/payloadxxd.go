package scanner

import (
	"bytes"
	"cmp"
	"math"
	"slices"
)

// Payloads written as xxd's default dump, which a script turns back into
// the program with xxd -r (xxd dump > m, xxd -r <<'EOF' … EOF, xxd -r -
// m):
//
//	00000000: 7f45 4c46 0201 0100 0000 0000 0000 0000  .ELF............
//
// xxd -r reads each line as its offset (the first hex digits of the
// line, whatever comes before them that is no hex digit: an indent, a
// "#"), then up to -c bytes (16 by default, 256 at most), a byte's two
// digits side by side and at most two other characters between bytes
// (the text column after two spaces is passed over), and writes the
// bytes at the offset: writing to a file, it seeks there, so lines may
// come in any order, a later line overwrites an earlier one, and gaps
// (xxd -a's "*" lines) are zeros; writing to a pipe, it fills gaps with
// zeros and stops at the first line that would go back. xxdRevert is
// that reading, xxd.c's huntype for its default style, checked against
// the host's xxd.
//
// A dump is found as a run of lines that start as xxd's do (dumpLineAt),
// at most maxDumpGap bytes of other lines between two of them, 4 KiB or
// more in all, whose bytes are hex of data and hold 256 or more whose
// lines follow one another (xxdTally.dump: tables of hex numbers are
// none). It is read
// four ways, each scanned when it differs from the first: to a file with
// -c 16 ("xxd -r@OFFSET"), to a pipe ("+1"), to a file with -c 256, which
// reads lines of any width whole ("+256"), and to a pipe with -c 256
// ("+257"). The program is taken from the lowest offset written, as xxd
// -r -s -OFFSET writes it: a dump made with xxd -s or -o starts there.
//
// What xxd writes may be far larger than the dump (a line at offset
// 0xffffffff makes a sparse file of 4 GiB). The zeros between the lines'
// bytes are written up to maxXxdSpan in all: a gap longer than that is
// left out, and the longest of the rest shortened until they fit, so
// that every byte the dump writes is scanned, in order, and only the
// length of long runs of zeros differs from xxd's output (see
// xxdSegments.image). A dump longer than a window is read from the
// spool as it streams (xxdDumpRun), its lines placed within a span of
// maxXxdSpan that moves on as they go: a line that goes back before it
// (a dump shuffled over more than maxXxdSpan of output) cannot be
// honoured, and stops the layer with ErrLimit.

// maxXxdSpan bounds the zeros written for a dump's gaps and the span of
// its output held to place its lines.
const maxXxdSpan = 16 << 20

// maxDumpGap is the most bytes of other lines between two lines of one
// dump: a comment line after each line, a "*" line of xxd -a.
const maxDumpGap = 512

// xxdReadings are the ways a dump is read (see xxdWay).
var xxdReadings = [...]int{0, 1, 256, 257}

// xxdWay is the reading that skip names: -c 256 from 256 on (-c 16
// below), -c N from xxdStepped on (skip = xxdStepped + 2N), to a pipe
// when it is odd.
func xxdWay(skip int) (cols int, pipe bool) {
	cols = 16
	switch {
	case skip >= xxdStepped:
		cols = max(1, min(256, (skip-xxdStepped)>>1))
	case skip >= 256:
		cols = 256
	}
	return cols, skip&1 == 1
}

// xxdStepped starts the readings with -c N for a dump whose lines'
// offsets step by N, neither 16 nor 256 (see dumpStep): xxd -r -c N reads
// N bytes a line and passes over the rest, so a dump of lines of N bytes
// with junk after them, out of order, is read as it reads it.
const xxdStepped = 512

// dumpStep is the step most of text's dump lines' offsets, sorted, go up
// by, or 0: the -c the dump was written with.
func dumpStep(text []byte) int {
	var offs []uint64
	for line := range bytes.Lines(text) {
		if !dumpLineAt(line) {
			continue
		}
		i := 0
		for i < len(line) && !isHexDigit(line[i]) {
			i++
		}
		var off uint64
		for j := i; j < len(line) && j-i < 16 && isHexDigit(line[j]); j++ {
			off = off<<4 | uint64(hexValue(line[j]))
		}
		offs = append(offs, off)
	}
	slices.Sort(offs)
	counts := map[uint64]int{}
	best, bestN := uint64(0), 0
	for k := 1; k < len(offs); k++ {
		d := offs[k] - offs[k-1]
		if d == 0 || d > 256 {
			continue
		}
		if counts[d]++; counts[d] > bestN {
			best, bestN = d, counts[d]
		}
	}
	if bestN*2 < len(offs) {
		return 0
	}
	return int(best)
}

// xxdSink takes the bytes xxd -r writes: b at offset off. b is only valid
// during the call.
type xxdSink interface {
	write(off int64, b []byte)
}

// xxdRevert is xxd -r's state over a dump given in pieces (xxd.c,
// huntype, HEX_NORMAL): the last three characters' values (-1 for no hex
// digit), whether other characters are passed over (at a line's start),
// the bytes read on the line (p, from cols while its offset is read),
// the offset the line wants and the one written at.
type xxdRevert struct {
	cols       int
	pipe       bool
	n1, n2, n3 int
	p          int
	ign        bool
	eol        bool // the rest of the line is passed over
	want, have int64
	// stopped says xxd -r stopped: a seek to a negative offset, or, into
	// a pipe, back before what it wrote.
	stopped bool
	// wide says that a line held more than 16 bytes, back that one went
	// back before what was written last (where xxd -r into a pipe
	// stops).
	wide, back bool
	// seg is what was written at segOff, not yet given to sink.
	seg    []byte
	segOff int64
	sink   xxdSink
}

func newXxdRevert(cols int, pipe bool, sink xxdSink) *xxdRevert {
	return &xxdRevert{cols: cols, pipe: pipe, n1: -1, p: cols, ign: true, sink: sink}
}

// feed reads text, the dump's next piece: huntype's loop, a character
// at a time.
func (x *xxdRevert) feed(text []byte) {
	for i := 0; i < len(text) && !x.stopped; i++ {
		c := text[i]
		if x.eol {
			k := bytes.IndexByte(text[i:], '\n')
			if k < 0 {
				return
			}
			i += k
			x.eol = false
			x.newline()
			continue
		}
		if c == '\r' {
			continue
		}
		x.n3, x.n2, x.n1 = x.n2, x.n1, int(xxdNibble[c])
		if x.n1 < 0 && x.ign {
			continue
		}
		x.ign = false
		if x.p >= x.cols {
			if x.n1 < 0 {
				x.p = 0
			} else {
				// A long offset wraps, as xxd's long does.
				x.want = int64(uint64(x.want)<<4 | uint64(x.n1))
			}
			continue
		}
		if x.want != x.have {
			if x.seek(); x.stopped {
				return
			}
		}
		switch {
		case x.n2 >= 0 && x.n1 >= 0:
			x.put(byte(x.n2<<4 | x.n1))
			x.n1 = -1
			if x.p++; x.p > 16 {
				x.wide = true
			}
			if x.p >= x.cols {
				x.eol = true // c is a digit, never the line's end
				continue
			}
		case x.n1 < 0 && x.n2 < 0 && x.n3 < 0 && c != '\n':
			x.eol = true
			continue
		}
		if c == '\n' {
			x.newline()
		}
	}
}

// xxdNibble is each byte's value as a hex digit, -1 for the others.
var xxdNibble = func() (t [256]int8) {
	for c := range 256 {
		t[c] = -1
		if isHexDigit(byte(c)) {
			t[c] = int8(hexValue(byte(c)))
		}
	}
	return t
}()

func (x *xxdRevert) newline() {
	x.want, x.p, x.ign = 0, x.cols, true
}

// seek goes to the offset the line wants: a file's fseek, which fails
// only before the file's start, or, into a pipe, zeros up to it.
// Either way, xxd stops where it cannot go back.
func (x *xxdRevert) seek() {
	x.back = x.back || x.want < x.have
	if x.want < 0 || x.pipe && x.want < x.have {
		x.stopped = true
		return
	}
	x.flush()
	x.have = x.want
}

func (x *xxdRevert) put(b byte) {
	if x.have == math.MaxInt64 {
		x.stopped = true // no file goes on past it
		return
	}
	if len(x.seg) == 0 {
		x.segOff = x.have
	}
	x.seg = append(x.seg, b)
	x.have++
	x.want++
	if len(x.seg) >= 4<<10 {
		x.flush()
	}
}

// flush gives what was written since the last seek to the sink.
func (x *xxdRevert) flush() {
	if len(x.seg) > 0 && x.sink != nil {
		x.sink.write(x.segOff, x.seg)
	}
	x.segOff += int64(len(x.seg))
	x.seg = x.seg[:0]
}

// xxdSegments gathers what a dump writes, in its order: each stretch
// written in one go, its bytes in raw.
type xxdSegments struct {
	raw  []byte
	segs []xxdSegment
}

type xxdSegment struct {
	off int64
	at  int // where its bytes start in raw
	n   int
}

func (s *xxdSegments) write(off int64, b []byte) {
	if k := len(s.segs) - 1; k >= 0 && s.segs[k].off+int64(s.segs[k].n) == off {
		s.segs[k].n += len(b) // the line after, as an ordered dump goes
	} else {
		s.segs = append(s.segs, xxdSegment{off: off, at: len(s.raw), n: len(b)})
	}
	s.raw = append(s.raw, b...)
}

// decodeXxdDump appends to out what xxd -r writes of text, the reading
// skip names (see xxdWay), from the lowest offset it writes.
func decodeXxdDump(out, text []byte, skip int) []byte {
	var s xxdSegments
	x := newXxdRevert(0, false, &s)
	x.cols, x.pipe = xxdWay(skip)
	x.p = x.cols
	x.feed(text)
	x.flush()
	return s.image(out)
}

// image appends to out the bytes written, each at its offset from the
// lowest, later ones over earlier ones, zeros between them. The zeros
// are bounded: when the gaps between the stretches written (sorted by
// offset, overlapping ones merged) hold more than maxXxdSpan in all, a
// gap longer than maxXxdSpan is left out, and the rest are cut to the
// longest length that keeps them within maxXxdSpan in all.
func (s *xxdSegments) image(out []byte) []byte {
	if len(s.segs) == 0 {
		return out
	}
	merged := make([]xxdStretch, len(s.segs))
	for i, g := range s.segs {
		merged[i] = xxdStretch{lo: g.off, hi: g.off + int64(g.n)}
	}
	slices.SortFunc(merged, func(a, b xxdStretch) int { return cmp.Compare(a.lo, b.lo) })
	k := 0
	for _, g := range merged[1:] {
		if g.lo <= merged[k].hi {
			merged[k].hi = max(merged[k].hi, g.hi)
			continue
		}
		k++
		merged[k] = g
	}
	merged = merged[:k+1]
	gaps := make([]int64, len(merged))
	var zeros int64
	for i := 1; i < len(merged); i++ {
		gaps[i] = merged[i].lo - merged[i-1].hi
		zeros += gaps[i]
	}
	if zeros > maxXxdSpan {
		zeros = 0
		for i, g := range gaps {
			if g > maxXxdSpan {
				gaps[i] = 0
			}
			zeros += gaps[i]
		}
		if zeros > maxXxdSpan {
			limit := gapLimit(gaps, maxXxdSpan)
			for i := range gaps {
				gaps[i] = min(gaps[i], limit)
			}
		}
	}
	at := int64(0)
	for i := range merged {
		at += gaps[i]
		merged[i].at = at
		at += merged[i].hi - merged[i].lo
	}
	n := len(out)
	out = slices.Grow(out, int(at))[:n+int(at)]
	clear(out[n:])
	for _, g := range s.segs {
		i, _ := slices.BinarySearchFunc(merged, g.off, func(m xxdStretch, off int64) int {
			return cmp.Compare(m.lo, off+1) // the last that starts at off or before
		})
		m := merged[i-1]
		copy(out[n+int(m.at+g.off-m.lo):], s.raw[g.at:g.at+g.n])
	}
	return out
}

// xxdStretch is a stretch of offsets a dump writes, [lo, hi), and where it
// goes in its image.
type xxdStretch struct{ lo, hi, at int64 }

// gapLimit is the longest length gaps may be cut to for their sum to be
// at most budget.
func gapLimit(gaps []int64, budget int64) int64 {
	sorted := slices.Clone(gaps)
	slices.Sort(sorted)
	var below int64 // the sum of the gaps shorter than the limit
	for i, g := range sorted {
		rest := int64(len(sorted) - i)
		if below+g*rest > budget {
			return (budget - below) / rest
		}
		below += g
	}
	return math.MaxInt64
}

// dumpLineAt says whether line, from a line's start, starts as a line
// of a dump does for xxd -r: at most 16 characters that are no hex
// digits (an indent, "# "), an offset of 2 to 32 hex digits, one or two
// other characters (": "), and a byte's two digits followed by another
// byte, one character at most between them ("7f45", "7f 45"), or by the
// line's end or two other characters (one byte a line, xxd -c 1). Its
// first 64 characters but \r, which xxd -r passes over wherever it
// stands, are looked at, within 256 bytes.
func dumpLineAt(line []byte) bool {
	var buf [64]byte
	n := 0
	for _, c := range line[:min(len(line), 256)] {
		if c != '\r' {
			buf[n] = c
			if n++; n == len(buf) || c == '\n' {
				break
			}
		}
	}
	line = buf[:n]
	i := 0
	for i < len(line) && i < 16 && !isHexDigit(line[i]) && line[i] != '\n' {
		i++
	}
	j := i
	for j < len(line) && isHexDigit(line[j]) {
		j++
	}
	if j-i < 2 || j-i > 32 {
		return false
	}
	k := j
	for k < len(line) && k-j < 2 && !isHexDigit(line[k]) && line[k] != '\n' {
		k++
	}
	if k == j || k+2 > len(line) || !isHexDigit(line[k]) || !isHexDigit(line[k+1]) {
		return false
	}
	k += 2
	ends := func(i int) bool { return i >= len(line) || line[i] == '\n' }
	if ends(k) {
		return true
	}
	if !isHexDigit(line[k]) {
		k++
	}
	if ends(k) {
		return false
	}
	if !isHexDigit(line[k]) {
		return true // two others: a dump's text column
	}
	return k+1 < len(line) && isHexDigit(line[k+1])
}

// lineEnd is where the line at data[i:] ends, past its '\n', looking at
// most limit bytes ahead (-1 when it ends further).
func lineEnd(data []byte, i, limit int) int {
	k := bytes.IndexByte(data[i:min(len(data), i+limit)], '\n')
	switch {
	case k >= 0:
		return i + k + 1
	case i+limit >= len(data):
		return len(data)
	}
	return -1
}

// dumpLineNear is the start of a dump's line a probe at data[p] finds:
// the line that holds p, if it starts within 2 KiB before p (a probe
// comes within 2 KiB after every line's start), or one of the lines that
// start within maxDumpGap after p (p between two lines of a dump); -1 if
// none does. It looks no further back than from.
func dumpLineNear(data []byte, p, from int) int {
	lo := max(from, p-2048)
	s := lo
	if k := bytes.LastIndexByte(data[lo:p], '\n'); k >= 0 {
		s = lo + k + 1
	}
	if (s > lo || lo == from) && dumpLineAt(data[s:]) {
		return s
	}
	for i := p; ; {
		i = lineEnd(data, i, maxDumpGap)
		if i < 0 || i >= len(data) || i > p+maxDumpGap {
			return -1
		}
		if dumpLineAt(data[i:]) {
			return i
		}
	}
}

// dumpRunStart is where the run of dump lines whose line starts at s
// starts: at the first line before it that is a dump's, at most
// maxDumpGap bytes of other lines apart, each line starting within 2 KiB
// before the next, and no further back than from.
func dumpRunStart(data []byte, s, from int) int {
	start := s
	// i is a line's start; the line before it ends there.
	for i := s; i > from && start-i <= maxDumpGap; {
		lo := max(from, i-1-2048)
		j := lo
		if k := bytes.LastIndexByte(data[lo:i-1], '\n'); k >= 0 {
			j = lo + k + 1
		} else if lo > from {
			break
		}
		if dumpLineAt(data[j:]) {
			start = j
		}
		i = j
	}
	return start
}

// dumpRunEnd is where the run of dump lines whose line starts at s ends:
// past the last of its lines, each at most maxDumpGap bytes of other
// lines after the one before.
func dumpRunEnd(data []byte, s int) int {
	end := lineEnd(data, s, len(data))
	for i := end; i < len(data); {
		k := lineEnd(data, i, len(data))
		if dumpLineAt(data[i:]) {
			end = k
		} else if k-end > maxDumpGap {
			break
		}
		i = k
	}
	return end
}

// xxdDense says whether the 64 characters at data[p] but \r (within
// 128 bytes) hold 24 hex digits or more, as any 64 of a dump do (40 or
// more of xxd's), and a program's bytes (one in twelve) and most text do
// not: a probe looks for a dump's lines only there.
func xxdDense(data []byte, p int) bool {
	seen, n := 0, 0
	for _, c := range data[p:min(len(data), p+128)] {
		if c == '\r' {
			continue
		}
		if xxdClass[c] == xxdDigit {
			n++
		}
		if seen++; seen == 64 {
			break
		}
	}
	return n >= 24
}

// xxdTally is a sink that gathers what a dump writes, for its finder:
// the stretches it writes (merged when one follows the last), how many
// times it writes (a line each), and how many of the bytes' hex digits
// are letters, of how many.
type xxdTally struct {
	segs            []xxdSegment
	lines           int
	nibbles, letter int
}

func (t *xxdTally) write(off int64, b []byte) {
	t.lines++
	if k := len(t.segs) - 1; k >= 0 && t.segs[k].off+int64(t.segs[k].n) == off {
		t.segs[k].n += len(b)
	} else {
		t.segs = append(t.segs, xxdSegment{off: off, n: len(b)})
	}
	for _, c := range b {
		t.letter += int(c>>4+6)>>4 + int(c&15+6)>>4 // nibbles over 9
	}
	t.nibbles += 2 * len(b)
}

// of gathers into t what xxd -r writes of text to a file with -c cols,
// and returns its reading.
func (t *xxdTally) of(text []byte, cols int) *xxdRevert {
	x := newXxdRevert(cols, false, t)
	x.feed(text)
	x.flush()
	return x
}

// dump says whether what was written is a dump of data: two lines or
// more (one writes 256 bytes at most; a spool's chunk may start inside
// a long line of hex for xxd -r -p, which looks like a dump's line),
// hex of data, n/2 letters and as many decimal digits or more (a table
// of decimal numbers that xxd -r would read, /etc/X11/rgb.txt, holds no
// letter), and, sorted by offset, a stretch of n bytes or more whose lines
// each start where those before end, or where another starts (a line
// written again, a dump after another): xxd's lines in any order, with
// any others before, among or after them. Tables of hex numbers (Unicode's,
// a font's, a collation's) that xxd -r would read, a code point a line,
// leave a gap or overlap part of the line before at almost every line.
func (t *xxdTally) dump(n int64) bool {
	if min(t.letter, t.nibbles-t.letter) < int(n/2) || t.lines < 2 {
		return false
	}
	spans := make([]xxdStretch, len(t.segs))
	for i, g := range t.segs {
		spans[i] = xxdStretch{lo: g.off, hi: g.off + int64(g.n)}
	}
	slices.SortFunc(spans, func(a, b xxdStretch) int { return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.hi, b.hi)) })
	start, hi := spans[0].lo, spans[0].hi
	for i, g := range spans {
		if i > 0 && g.lo != hi && g.lo != spans[i-1].lo {
			start, hi = g.lo, g.hi
		}
		if hi = max(hi, g.hi); hi-start >= n {
			return true
		}
	}
	return false
}

// appendXxdDumps appends the payloads of data's dumps for xxd -r (see
// above), at probes half a run apart as base64's are: a dump of 4 KiB or
// more holds one of them. Each is read as it is written to a file with
// -c 16, and the other ways when they write something else: to a pipe
// when that stops before the end (a line goes back), with -c 256 when a
// line holds more than 16 bytes. A dump's lines are read as a dump, not
// as xxd -r -p would read them, offsets and text columns among the bytes
// (as runs of escapes are not read again as hex): the runs of hex pairs
// in out within a dump, give or take maxDumpGap, are left out, so that
// the search of a spool, which reads one run over each stretch of a
// file, reads the dump.
func appendXxdDumps(out []payload, data []byte) []payload {
	if len(data) < minBase64Run {
		return out
	}
	const step = minBase64Run / 2
	done := 0
	found := len(out)
	for p := step - 1; p < len(data); p += step {
		if p < done || !xxdDense(data, p) {
			continue
		}
		s := dumpLineNear(data, p, done)
		if s < 0 {
			continue
		}
		from := dumpRunStart(data, s, done)
		to := dumpRunEnd(data, s)
		done = max(to, p+1)
		text := data[from:to]
		if len(text) < minBase64Run {
			continue
		}
		// Lines of 16 bytes and hex after them that -c 256 takes in,
		// or lines of more than 16 bytes: either reading may be the
		// dump's. Into a pipe, xxd -r writes what it writes to a file
		// unless a line goes back.
		var narrow, wide xxdTally
		x16, x256 := narrow.of(text, 16), wide.of(text, 256)
		plain := narrow.dump(minBase64Run/16) || wide.dump(minBase64Run/16)
		step := 0
		if s := dumpStep(text); s != 0 && s != 16 && s != 256 {
			var stepped xxdTally
			stepped.of(text, s)
			if stepped.dump(minBase64Run / 16) {
				step = s
			}
		}
		if !plain && step == 0 {
			continue
		}
		text = bytes.Clone(text)
		for pipe := range 2 {
			if step != 0 {
				out = append(out, payload{offset: from, skip: xxdStepped + 2*step + pipe, text: text, enc: encXxdDump, from: from, to: to})
			}
		}
		for _, skip := range xxdReadings {
			if !plain {
				break
			}
			cols, pipe := xxdWay(skip)
			x := x16
			if cols > 16 {
				x = x256
			}
			if cols > 16 && !x256.wide || pipe && !x.back {
				continue
			}
			out = append(out, payload{offset: from, skip: skip, text: text, enc: encXxdDump, from: from, to: to})
		}

	}
	if len(out) == found {
		return out
	}
	dumps := slices.Clone(out[found:]) // out moves as runs are left out
	return slices.DeleteFunc(out, func(p payload) bool {
		if p.enc != encHexPairs {
			return false
		}
		for _, d := range dumps {
			if p.from >= d.from-maxDumpGap && p.to <= d.to+maxDumpGap {
				return true
			}
		}
		return false
	})
}
