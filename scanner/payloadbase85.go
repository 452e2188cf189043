package scanner

import (
	"bufio"
	"bytes"
	"io"
	"math/bits"
)

// Payloads in base85, five letters for four bytes, in its three
// alphabets: Ascii85 (Python's a85decode, btoa's), git's base85
// (Python's b85decode) and Z85 (basenc --z85 -d, which every Debian and
// Ubuntu image holds). Their letters are most of ASCII's printable
// characters, punctuation among them, so a run is found on its own, at
// probes 2 KiB apart as base64's chains are: a stretch of one alphabet's
// letters and what its decoders pass over, whose letters, 4 KiB or more,
// hold digits, both letter cases and punctuation as base85 of data does
// (base64 and hex, whose letters are base85's too, hold too little
// punctuation). It is decoded at each of the five alignments, from its
// first letter; an Ascii85 run, whose alphabet holds the quotes, also
// from after a quote among its first 32 letters (Python's b'…').

// base85 is one of base85's alphabets.
type base85 struct {
	value [256]int8 // each letter's value, -1 for a byte that is none
	zero  bool      // "z" at a group's start is four zero bytes (Ascii85)
	// pass marks what the decoders pass over: Python's a85decode white
	// space (its quotes are letters), basenc's line breaks for Z85, and
	// for git's base85, which Python reads from literals, white space and
	// quotes, so that adjacent literals join.
	pass [256]bool
}

func newBase85(alphabet string, zero bool, pass func(c byte) bool) *base85 {
	e := &base85{zero: zero}
	for i := range e.value {
		e.value[i] = -1
		e.pass[i] = pass(byte(i))
	}
	for v, c := range []byte(alphabet) {
		e.value[c] = int8(v)
	}
	return e
}

var (
	alphaA85 = newBase85(func() string {
		var b []byte
		for c := byte('!'); c <= 'u'; c++ {
			b = append(b, c)
		}
		return string(b)
	}(), true, func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' })
	alphaB85 = newBase85("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~", false, runSpace)
	alphaZ85 = newBase85("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#", false, func(c byte) bool { return c == '\n' || c == '\r' })
)

// base85s maps base85's encodings to their alphabets.
var base85s = map[encoding]*base85{encAscii85: alphaA85, encBase85: alphaB85, encZ85: alphaZ85}

// letter says whether c is one of e's letters ("z" too, for Ascii85).
func (e *base85) letter(c byte) bool { return e.value[c] >= 0 || e.zero && c == 'z' }

// base85Decoder turns base85 letters into bytes, five for four.
type base85Decoder struct {
	e    *base85
	skip int    // letters still to leave out
	acc  uint64 // the group's value so far
	n    int    // the group's letters read
	bad  bool   // a group overflowed 32 bits: the run ends there
}

// letter takes c, one of the alphabet's letters, appending to out the
// bytes of the group it completes.
func (d *base85Decoder) letter(out []byte, c byte) []byte {
	if d.skip > 0 {
		d.skip--
		return out
	}
	if c == 'z' && d.e.zero && d.n == 0 {
		return append(out, 0, 0, 0, 0)
	}
	if d.e.value[c] < 0 { // "z" inside a group
		d.bad = true
		return out
	}
	d.acc = d.acc*85 + uint64(d.e.value[c])
	if d.n++; d.n < 5 {
		return out
	}
	v := d.acc
	d.acc, d.n = 0, 0
	if v > 0xffffffff {
		d.bad = true
		return out
	}
	return append(out, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// flush ends the last group, padded with the highest letter as Python
// pads it: k letters give k-1 bytes.
func (d *base85Decoder) flush(out []byte) []byte {
	k := d.n
	if k < 2 || d.bad {
		return out
	}
	v := d.acc
	for range 5 - k {
		v = v*85 + 84
	}
	d.acc, d.n = 0, 0
	if v > 0xffffffff {
		return out
	}
	b := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	return append(out, b[:k-1]...)
}

// base85Run decodes base85 from r, leaving out its first skip letters:
// what its alphabet passes over is passed over (and \n-style escapes for
// git's base85 and Z85), and the first other byte ends it, or a group
// that overflows. n counts the bytes it read.
type base85Run struct {
	filled
	r   *bufio.Reader
	d   base85Decoder
	n   int64
	buf []byte
}

func newBase85Run(r *bufio.Reader, e *base85, skip int) *base85Run {
	return &base85Run{r: r, d: base85Decoder{e: e, skip: skip}}
}

// taken is how many bytes of its reader the run took.
func (b *base85Run) taken() int64 { return b.n }

func (b *base85Run) Read(p []byte) (int, error) { return b.read(p, b.fill) }

// fill decodes the next few KiB into b.out.
func (b *base85Run) fill() {
	out := b.buf[:0]
	for len(out) < 3<<10 && !b.done {
		c, err := b.r.ReadByte()
		if err != nil {
			b.done = true
			break
		}
		b.n++
		switch e := b.d.e; {
		case e.letter(c):
			out = b.d.letter(out, c)
			b.done = b.d.bad
		case e.pass[c]:
		case c == '\\' && e != alphaA85:
			if p, err := b.r.Peek(1); err == nil && (p[0] == 'n' || p[0] == 'r' || p[0] == 't') {
				b.r.ReadByte()
				b.n++
				continue
			}
			b.done = true
		default:
			b.done = true
		}
	}
	if b.done {
		out = b.d.flush(out)
	}
	b.buf, b.out = out, out
}

// decodeBase85 appends to out text, a run's letters, decoded in e from
// its skip-th letter.
func decodeBase85(out, text []byte, skip int, e *base85) []byte {
	var buf bytes.Buffer
	buf.Write(out)
	_, _ = io.Copy(&buf, newBase85Run(bufio.NewReader(bytes.NewReader(text)), e, skip)) // from memory: no error
	return buf.Bytes()
}

// base85Encodings are base85's encodings, in the order of base85Alive's
// bits.
var base85Encodings = [...]encoding{encAscii85, encBase85, encZ85}

// base85Classes holds, for each byte, a bit for each alphabet of
// base85Encodings that reads it as a letter or passes over it (or, for
// git's base85 and Z85, may start a \n-style escape).
var base85Classes = func() (t [256]uint8) {
	for c := range t {
		for k, enc := range base85Encodings {
			if e := base85s[enc]; e.letter(byte(c)) || e.pass[c] || c == '\\' && e != alphaA85 {
				t[c] |= 1 << k
			}
		}
	}
	return t
}()

// base85Alive is the alphabets of base85Encodings, a bit each, that
// read the 64 bytes at p as letters or pass over them: a byte of text
// or of a program that none reads ends the look.
func base85Alive(data []byte, p int) uint8 {
	alive := uint8(1<<len(base85Encodings) - 1)
	for _, c := range data[p:min(len(data), p+64)] {
		if alive &= base85Classes[c]; alive == 0 {
			break
		}
	}
	return alive
}

// appendBase85Runs appends data's runs of base85 in each alphabet: at a
// probe every half run, a stretch of an alphabet's letters and what it
// passes over, walked once, whose letters, minBase64Run or more, look
// like base85 of data (looksBase85).
func appendBase85Runs(out []payload, data []byte) []payload {
	const step = minBase64Run / 2
	var done [len(base85Encodings)]int
	for p := step - 1; p < len(data); p += step {
		alive := base85Alive(data, p)
		for k, enc := range base85Encodings {
			if alive&(1<<k) != 0 && p >= done[k] && base85Window(data, p, base85s[enc]) && base85Ahead(data, p, base85s[enc]) {
				out, done[k] = appendBase85Run(out, data, p, done[k], enc)
			}
		}
	}
	return out
}

// appendBase85Run appends the run of base85 in enc's alphabet that holds
// data[p], if it is one, walking from p back to done at most, and returns
// where the stretch walked ends.
func appendBase85Run(out []payload, data []byte, p, done int, enc encoding) ([]payload, int) {
	e := base85s[enc]
	in := func(i int) bool {
		c := data[i]
		return e.letter(c) || e.pass[c] || c == '\\' && e != alphaA85 && urlEscape(data, i)
	}
	from := p
	for from > done && in(from-1) {
		from--
	}
	to, n := p, 0
	for to < len(data) && in(to) {
		if urlEscape(data, to) && e != alphaA85 {
			to += 2
			continue
		}
		if e.letter(data[to]) {
			n++
		}
		to++
	}
	if n < minBase64Run {
		return out, to
	}
	from = base85Start(data, from, to, e)
	text := make([]byte, 0, n)
	for i := from; i < to; i++ {
		if e != alphaA85 && urlEscape(data, i) {
			i++
		} else if e.letter(data[i]) {
			text = append(text, data[i])
		}
	}
	if !looksBase85(text) {
		return out, to
	}
	starts := []int{0}
	if enc == encAscii85 {
		if q := bytes.IndexAny(text[:32], `'"`); q >= 0 {
			starts = append(starts, q+1)
		}
	}
	if nl := bytes.IndexByte(data[from:min(to, from+maxWindowSpace)], '\n'); nl >= 0 {
		// Letters spaced out, no 32 of them in a row: words before
		// the run on its first line (a command) are left out from the
		// next line on.
		k := 0
		for _, c := range data[from : from+nl] {
			if e.letter(c) {
				k++
			}
		}
		if k > 0 {
			starts = append(starts, k)
		}
	}
	for _, s := range starts {
		for skip := range 5 {
			out = append(out, payload{offset: from, skip: s + skip, text: text, enc: enc, from: from, to: to})
		}
	}
	return out, to
}

// base85Window says whether the bytes at p, up to 64 letters (within
// maxWindowSpace: letters spaced out by white space are looked at as
// dense ones are), may be inside a run of e's base85: all of them its
// letters or what it passes over, 32 letters or more, and either
// digits, both letter cases and 6 punctuation characters or more among
// them, as 64 letters of base85 of data hold (about 12), or 5 letters or
// fewer (a group repeated: zeros or another fill). A run of minBase64Run
// letters holds a probe 64 bytes before its end, and is walked from
// there; text is passed over at the first byte its alphabet lacks or at
// this count, which keeps the probe to a look at 64 bytes.
func base85Window(data []byte, p int, e *base85) bool {
	var set [2]uint64 // the letters seen, by their bits
	n := 0
	for _, c := range data[p:min(len(data), p+maxWindowSpace)] {
		if n == 64 {
			break
		}
		if e.pass[c] || c == '\\' && e != alphaA85 { // \n-style escapes: see appendBase85Run
			continue
		}
		if !e.letter(c) || c >= 128 {
			return false
		}
		set[c>>6] |= 1 << (c & 63)
		n++
	}
	if n < 32 {
		return false // white space: a run's lines are longer
	}
	const (
		digits = uint64(1<<10-1) << '0'
		upper  = uint64(1<<26-1) << ('A' - 64)
		lower  = uint64(1<<26-1) << ('a' - 64)
	)
	punct := bits.OnesCount64(set[0]&^digits) + bits.OnesCount64(set[1]&^(upper|lower))
	all := bits.OnesCount64(set[0]) + bits.OnesCount64(set[1])
	return all <= 5 || punct >= 6 && set[0]&digits != 0 && set[1]&upper != 0 && set[1]&lower != 0
}

// base85Ahead says whether the letters of e's alphabet from p on, up to
// minBase64Run of them, look like base85 of data (looksBase85), 1 KiB of
// them at least: the stretch a run is classed by is read before the run
// is walked, so text of its letters whose window looked like base85
// (a table of names and numbers) costs 4 KiB, not the walk of its whole.
// A run of minBase64Run letters whose data a probe's window finds holds
// such a stretch from there, or from the probe before it.
func base85Ahead(data []byte, p int, e *base85) bool {
	var buf [minBase64Run]byte
	n := 0
	for i := p; i < len(data) && n < len(buf); i++ {
		switch c := data[i]; {
		case e.letter(c):
			buf[n] = c
			n++
		case e.pass[c]:
		case e != alphaA85 && urlEscape(data, i):
			i++
		default:
			return n >= 1<<10 && looksBase85(buf[:n])
		}
	}
	return n >= 1<<10 && looksBase85(buf[:n])
}

// base85Start is where the letters of the run data[from:to] start: at
// its first stretch of 32 letters in a row, as a line or a literal of
// base85 is, so that words before it on its line (a command, "b85decode(")
// are not read into it; at its first letter if it has none.
func base85Start(data []byte, from, to int, e *base85) int {
	first, n := -1, 0
	for i := from; i < to; i++ {
		if !e.letter(data[i]) {
			n = 0
			continue
		}
		if n == 0 {
			if first < 0 {
				first = i
			}
			from = i
		}
		if n++; n == 32 {
			return from
		}
	}
	return first
}

// looksBase85 says whether text, a run's letters, looks like base85 of
// data: in one of its stretches of minBase64Run letters, a digit in 32
// or more, an upper-case and a lower-case letter in 16 or more each, as
// much punctuation, and most of the alphabet: 8 digits, 18 letters of
// each case and 16 punctuation characters, each at least once. Base85
// of a program or of text spreads over the whole alphabet (each letter
// about 48 times in 4 KiB); base64 (+ and / in 32) and hex hold too
// little punctuation, and text read through its spaces (a table, prose,
// a list of names) uses a dozen punctuation characters or fewer.
func looksBase85(text []byte) bool {
	return someStretch(text, func(w []byte) bool {
		var seen [256]bool
		var digits, upper, lower, punct int
		var kDigits, kUpper, kLower, kPunct int
		for _, c := range w {
			first := !seen[c]
			seen[c] = true
			switch {
			case c >= '0' && c <= '9':
				digits++
				if first {
					kDigits++
				}
			case c >= 'A' && c <= 'Z':
				upper++
				if first {
					kUpper++
				}
			case c >= 'a' && c <= 'z':
				lower++
				if first {
					kLower++
				}
			default:
				punct++
				if first {
					kPunct++
				}
			}
		}
		return digits*32 >= len(w) && upper*16 >= len(w) && lower*16 >= len(w) && punct*16 >= len(w) &&
			kDigits >= 8 && kUpper >= 18 && kLower >= 18 && kPunct >= 16
	})
}
