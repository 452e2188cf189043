package scanner

import (
	"bufio"
	"bytes"
	"math/bits"
	"slices"
)

// Payloads in the other encodings of coreutils' basenc, which every
// Debian and Ubuntu image holds, and of Python's base64 module:
//
//   - base32 (base32 -d, basenc --base32 -d, base64.b32decode, lower
//     case as with casefold=True), base32hex (basenc --base32hex -d,
//     base64.b32hexdecode) and base2 (basenc --base2msbf -d and
//     --base2lsbf -d). Their letters are base64's, so a run of them is
//     found as a chain of pieces like any other; a chain of 4 KiB or more
//     whose every character is one of the encoding's, and that holds its
//     letters as data does, is decoded in it, at each of its alignments
//     (eight letters a group for base32, eight a byte for base2);
//   - base64url (basenc --base64url -d, base64.urlsafe_b64decode): its
//     "-" and "_" are no base64 letters and cut its text into pieces a
//     character apart, so it has a probe of its own (appendURLRuns).
//
// Each is decoded as basenc -d reads it: white space, quotes and \n-style
// escapes passed over, padding ending a group and the text going on after
// it, the first other byte ending the run.

// basenc is how one encoding's letters are bits.
type basenc struct {
	value  [256]int8 // each letter's value, -1 for a byte that is none
	bits   uint      // bits a letter
	group  int       // letters a group: a whole number of bytes
	lsbf   bool      // a byte's bits come lowest first
	padded bool      // "=" pads a group (hex has none: it ends the run)
}

func newBasenc(alphabet string, bits uint, group int, fold bool) *basenc {
	e := &basenc{bits: bits, group: group, padded: true}
	for i := range e.value {
		e.value[i] = -1
	}
	for v, c := range []byte(alphabet) {
		e.value[c] = int8(v)
		if fold && c >= 'A' && c <= 'Z' {
			e.value[c|0x20] = int8(v)
		}
	}
	return e
}

var (
	// urlBase64 reads base64url, and standard base64's + and / as
	// Python's urlsafe_b64decode does. Standard base64 is read with it
	// too: a run that goes on in base64url past its first window (zeros,
	// "AAAA…", are the same in both) is read on as a whole.
	urlBase64 = func() *basenc {
		e := newBasenc("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 6, 4, false)
		e.value['+'], e.value['/'] = 62, 63
		return e
	}()
	base32Std = newBasenc("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 5, 8, true)
	base32Hex = newBasenc("0123456789ABCDEFGHIJKLMNOPQRSTUV", 5, 8, true)
	base2MSB  = newBasenc("01", 1, 8, false)
	base2LSB  = func() *basenc { e := newBasenc("01", 1, 8, false); e.lsbf = true; return e }()
	hexDigits = func() *basenc {
		e := newBasenc("0123456789ABCDEF", 4, 2, true)
		e.padded = false
		return e
	}()
)

// basencs maps the encodings read as letters of bits to their letters.
var basencs = map[encoding]*basenc{
	encBase64:    urlBase64,
	encBase64URL: urlBase64,
	encBase32:    base32Std,
	encBase32Hex: base32Hex,
	encBase2MSB:  base2MSB,
	encBase2LSB:  base2LSB,
	encHex:       hexDigits,
}

// bitsDecoder turns an encoding's letters into bytes, group by group.
type bitsDecoder struct {
	e    *basenc
	skip int    // letters still to leave out
	acc  uint64 // bits not yet a byte, the last read lowest
	nacc uint   // how many
	ng   int    // letters of the group read
}

// letter takes c, one of the encoding's letters, appending to out the
// byte it completes.
func (d *bitsDecoder) letter(out []byte, c byte) []byte {
	if d.skip > 0 {
		d.skip--
		return out
	}
	d.acc = d.acc<<d.e.bits | uint64(d.e.value[c])
	d.nacc += d.e.bits
	if d.nacc >= 8 {
		d.nacc -= 8
		b := byte(d.acc >> d.nacc)
		if d.e.lsbf {
			b = bits.Reverse8(b)
		}
		out = append(out, b)
	}
	if d.ng++; d.ng == d.e.group {
		d.ng, d.nacc = 0, 0
	}
	return out
}

// pad ends the group at padding: its bits that are no whole byte are
// dropped, as base64 -d drops those of "QQ==".
func (d *bitsDecoder) pad() { d.ng, d.nacc = 0, 0 }

// decodeBasenc appends to out text, a run's letters and padding, decoded
// in e from its skip-th letter as basencRun reads them, up to its first
// byte that is neither.
func decodeBasenc(out, text []byte, skip int, e *basenc) []byte {
	out = slices.Grow(out, len(text)*int(e.bits)/8)
	d := bitsDecoder{e: e, skip: skip}
	for _, c := range text {
		switch {
		case c == '=' && e.padded:
			d.pad()
		case e.value[c] >= 0:
			out = d.letter(out, c)
		default:
			return out
		}
	}
	return out
}

// basencRun decodes text in one of basenc's encodings from r as
// basenc -d reads it, leaving out its first skip letters: white space,
// quotes and the escapes \n, \r and \t are passed over, padding ends a
// group and the text goes on after it (GNU basenc -d reads separately
// padded lines so), and the first other byte ends it. n counts the bytes
// it read.
type basencRun struct {
	filled
	r   *bufio.Reader
	d   bitsDecoder
	n   int64
	buf []byte
}

func newBasencRun(r *bufio.Reader, e *basenc, skip int) *basencRun {
	return &basencRun{r: r, d: bitsDecoder{e: e, skip: skip}}
}

// taken is how many bytes of its reader the run took.
func (b *basencRun) taken() int64 { return b.n }

func (b *basencRun) Read(p []byte) (int, error) { return b.read(p, b.fill) }

// fill decodes the next few KiB into b.out.
func (b *basencRun) fill() {
	out := b.buf[:0]
	for len(out) < 3<<10 && !b.done {
		c, err := b.r.ReadByte()
		if err != nil {
			b.done = true
			break
		}
		b.n++
		switch {
		case c == '=' && b.d.e.padded:
			b.d.pad()
		case b.d.e.value[c] >= 0:
			out = b.d.letter(out, c)
		case runSpace(c):
		case c == '\\':
			if e, err := b.r.Peek(1); err == nil && (e[0] == 'n' || e[0] == 'r' || e[0] == 't') {
				b.r.ReadByte()
				b.n++
				continue
			}
			b.done = true
		default:
			b.done = true
		}
	}
	b.buf, b.out = out, out
}

// appendBasenc appends the payloads of text, a chain's characters at
// offset, in each of base32, base32hex and base2 that a stretch of it is
// written in (see basencSegments).
func appendBasenc(out []payload, offset int, text []byte) []payload {
	if len(text) < minBase64Run {
		return out
	}
	for _, seg := range basencSegments(text) {
		for skip := range basencs[seg.enc].group {
			out = append(out, payload{offset: offset, skip: skip, text: seg.text, enc: seg.enc})
		}
	}
	return out
}

// basencSegment is a stretch of a chain's characters written in enc.
type basencSegment struct {
	enc  encoding
	text []byte
}

// basencSegments is the stretches of text, a chain's characters, written
// in base32, base32hex or base2: each as long as the encoding's letters
// and padding go on, minBase64Run letters or more, holding them as data
// written in it does in one of its stretches of minBase64Run (a word of
// other letters joined to the block, an output path or a YAML key, ends
// a stretch, not the block). Base32 of a program or of text holds a
// digit (2 to 7) in about six letters, base32hex a letter past F in two,
// base2 both its letters, and base32 and base32hex 30 of their 32 letters
// or more; words run together ("ALPHABRAVO…"), upper-case hex and a line
// of one digit hold too few.
func basencSegments(text []byte) []basencSegment {
	var out []basencSegment
	for _, k := range basencKinds {
		for i := 0; i < len(text); {
			j, n := i, 0
			for j < len(text) && (text[j] == '=' || k.in(text[j])) {
				if text[j] != '=' {
					n++
				}
				j++
			}
			if n >= minBase64Run && someStretch(text[i:j], func(w []byte) bool { return k.data(lettersOf(w)) }) {
				out = append(out, basencSegment{k.enc, text[i:j]})
				if k.enc == encBase2MSB {
					out = append(out, basencSegment{encBase2LSB, text[i:j]})
				}
			}
			i = max(j, i+1)
		}
	}
	return out
}

// spread is how many of e's letters w holds, each counted once: base32
// of data, 4 KiB of it, holds all 32 or nearly; text that is only
// written in both base32's letters and base32hex's (A to V, 2 to 7) holds
// 28 of either, and is decoded in neither.
func spread(w []byte, e *basenc) int {
	var seen uint64
	for _, c := range w {
		if v := e.value[c]; v >= 0 {
			seen |= 1 << v
		}
	}
	return bits.OnesCount64(seen)
}

// basencKinds are the encodings basencSegments finds: the letters of
// each, and whether a stretch of them holds letters as data written in
// it does.
var basencKinds = []struct {
	enc  encoding
	in   func(c byte) bool
	data func(w []byte) bool
}{
	{encBase32, func(c byte) bool { return base32Std.value[c] >= 0 }, func(w []byte) bool {
		digits := 0
		for _, c := range w {
			if c >= '2' && c <= '7' {
				digits++
			}
		}
		return digits*32 >= len(w) && (len(w)-digits)*4 >= len(w) && spread(w, base32Std) >= 30
	}},
	{encBase32Hex, func(c byte) bool { return base32Hex.value[c] >= 0 }, func(w []byte) bool {
		past, digits := 0, 0
		for _, c := range w {
			switch {
			case c >= '0' && c <= '9':
				digits++
			case c|0x20 > 'f':
				past++
			}
		}
		return past*8 >= len(w) && digits*32 >= len(w) && spread(w, base32Hex) >= 30
	}},
	{encBase2MSB, func(c byte) bool { return c == '0' || c == '1' }, func(w []byte) bool {
		ones := bytes.Count(w, []byte{'1'})
		return ones*32 >= len(w) && (len(w)-ones)*32 >= len(w)
	}},
}

// isURLRun marks what a run of base64url is read over (see basencRun):
// its letters, standard base64's + and / (urlsafe_b64decode reads them),
// padding, white space and quotes. A backslash is, before n, r or t.
var isURLRun = func() (t [256]bool) {
	for c := range t {
		t[c] = urlBase64.value[c] >= 0 || c == '=' || runSpace(byte(c))
	}
	return t
}()

// urlEscape says whether data[i:] is one of the escapes basencRun passes
// over (\n, \r, \t).
func urlEscape(data []byte, i int) bool {
	return data[i] == '\\' && i+1 < len(data) && (data[i+1] == 'n' || data[i+1] == 'r' || data[i+1] == 't')
}

// isAlnum marks base64's letters and digits.
var isAlnum = func() (t [256]bool) {
	for c := range t {
		t[c] = isB64[c] && c != '+' && c != '/' && c != '='
	}
	return t
}()

// urlWindow says whether the 256 bytes at p (or to data's end) may be
// inside a run of base64url: all of them what a run is read over, with
// a digit, both letter cases and a - or _ between two letters or digits
// among them, as base64url of data holds (a - or _ about every 32
// letters); a window in a stretch of "AAAA…" (zeros) is none, and a run
// that holds some is found from a probe in its data. Text is passed over
// at its first byte that is none, which keeps most probes to a look at a
// few bytes.
func urlWindow(data []byte, p int) bool {
	var digit, upper, lower, dash bool
	end := min(len(data), p+256)
	for i := p; i < end; i++ {
		c := data[i]
		switch {
		case urlEscape(data, i):
			i++
		case !isURLRun[c]:
			return false
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c == '-' || c == '_':
			dash = dash || i > 0 && i+1 < len(data) && isAlnum[data[i-1]] && isAlnum[data[i+1]]
		}
	}
	return digit && upper && lower && dash
}

// appendURLRuns appends data's runs of base64url: stretches of what a
// run is read over (isURLRun), minBase64Run letters or more, that hold a
// - or _ between two letters or digits, as base64url of data does every
// 32 letters or so and the dashes of a PEM file's "-----BEGIN" lines do
// not. A stretch is looked for at a probe every half run, as base64's
// chains are (see urlWindow), and walked once; its copy with + and / for - and _ is
// searched as base64 is (probePayloads), so that its pieces are joined
// and the words before them left out as base64's are ("echo '", "b'" of
// a Python bytes literal, a here-document's marker). A run longer than a
// window whose first - or _ is past it is read on by base64's own reading
// of the spool (see urlBase64).
func appendURLRuns(out []payload, data []byte) []payload {
	const step = minBase64Run / 2
	done := 0
	for p := step - 1; p < len(data); p += step {
		if p < done || !urlWindow(data, p) {
			continue
		}
		from := p
		for from > done && (isURLRun[data[from-1]] || urlEscape(data, from-1)) {
			from--
		}
		to, url, n := from, false, 0
		for to < len(data) {
			c := data[to]
			switch {
			case urlEscape(data, to):
				to += 2
				continue
			case !isURLRun[c]:
			case (c == '-' || c == '_') && to > 0 && to+1 < len(data) && isAlnum[data[to-1]] && isAlnum[data[to+1]]:
				url = true
				fallthrough
			case urlBase64.value[c] >= 0:
				n++
				fallthrough
			default:
				to++
				continue
			}
			break
		}
		done = to
		if n < minBase64Run || !url {
			continue
		}
		text := bytes.Clone(data[from:to])
		for i, c := range text {
			switch c {
			case '-':
				text[i] = '+'
			case '_':
				text[i] = '/'
			}
		}
		for _, q := range probePayloads(text, false) {
			if q.enc != encBase64 {
				continue // found in data as it is
			}
			q.offset, q.from, q.to, q.enc = q.offset+from, q.from+from, q.to+from, encBase64URL
			out = append(out, q)
		}
	}
	return out
}
