package scanner

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
)

// Payloads written in hex, the other encoding a script turns back into a
// program with the host's own tools:
//
//   - plain hex digits: xxd -r -p, Python's bytes.fromhex and
//     binascii.unhexlify, Perl's pack("H*"). Hex digits are base64
//     letters, so such a run is found as a chain of pieces like any other
//     (a dump of lines of 60 digits is one chain); a run of 4 KiB or more
//     whose characters are all hex digits is decoded as hex, at both
//     alignments, rather than as base64 (which looksEncoded refuses it
//     as: hex has one letter case, or none);
//   - byte escapes in a string: "\x7f\x45" and octal "\177\105" as
//     printf, echo -e, bash's $'…', Python, Perl and Ruby read them, a
//     program's bytes written one escape each, or as Python's repr
//     writes bytes (printable ones as they are, the rest escaped). The
//     string is decoded as its holder reads it: inside quotes, escapes
//     give their bytes (\n, \t, \\, \' and the like too) and other
//     characters themselves; outside, quotes open strings again
//     (printf '…'"…", Python's adjacent literals) and up to maxEscapeGap
//     bytes between strings are passed over (a line's "printf '", "' >> x"),
//     so a program written over many lines of printf is read as one.
//     A run is read from 4 KiB of the file, holding 256 byte escapes or
//     more; "\0NNN", which echo -e reads as one octal escape and printf
//     as "\0NN" and a digit, is read both ways when the run holds it.
//
// basenc's other encodings, base85 and xxd's default dump are read too
// (see payloadbasenc.go, payloadbase85.go and payloadxxd.go); uuencode is
// not.

// encoding is how a payload's characters are decoded.
type encoding uint8

const (
	encBase64      encoding = iota
	encHex                  // hex digits, two a byte
	encEscaped              // a string's byte escapes, \0NNN as printf reads it
	encEscapedEcho          // the same, \0NNN as echo -e reads it
	encHexPairs             // hex pairs among other characters, as xxd -r -p reads them
	encBase32               // base32 (RFC 4648), as base32 -d reads it
	encBase64URL            // base64 with - and _ for + and /, as basenc --base64url -d reads it
	encBase32Hex            // base32 with the letters 0-9A-V, as basenc --base32hex -d reads it
	encBase2MSB             // one letter 0 or 1 a bit, the first the highest, as basenc --base2msbf -d reads it
	encBase2LSB             // the same, the first the lowest, as basenc --base2lsbf -d reads it
	encAscii85              // Ascii85, as Python's a85decode reads it
	encBase85               // base85 of git and Python's b85decode
	encZ85                  // Z85, as basenc --z85 -d reads it
	encXxdDump              // xxd's default dump, as xxd -r reads it
)

// prefix names a payload of e in findings ("hex@1234").
func (e encoding) prefix() string {
	switch e {
	case encHex:
		return "hex"
	case encEscaped:
		return "escapes"
	case encEscapedEcho:
		return "escapes+echo"
	case encHexPairs:
		return "xxd -r -p"
	case encBase32:
		return "base32"
	case encBase64URL:
		return "base64url"
	case encBase32Hex:
		return "base32hex"
	case encBase2MSB:
		return "base2msbf"
	case encBase2LSB:
		return "base2lsbf"
	case encAscii85:
		return "ascii85"
	case encBase85:
		return "base85"
	case encZ85:
		return "z85"
	case encXxdDump:
		return "xxd -r"
	}
	return "base64"
}

// minByteEscapes is how many \x or octal escapes a run of them holds at
// least to be decoded: a source file's strings with a few escapes each
// cost nothing, a program written as escapes holds thousands.
const minByteEscapes = 256

// isHexText says whether every character of text is a hex digit, and
// one of its stretches of minBase64Run holds a digit and a letter in 32
// or more each, as hex of data does (about 10 digits and 6 letters in
// 16): a run of one character ("0000…", "aaaa…", a tar's padding) is
// none, while zeros padding a program do not hide it.
func isHexText(text []byte) bool {
	for _, c := range text {
		if !isHexDigit(c) {
			return false
		}
	}
	return someStretch(text, func(w []byte) bool {
		digits := 0
		for _, c := range w {
			if c <= '9' {
				digits++
			}
		}
		return digits >= len(w)/32 && len(w)-digits >= len(w)/32
	})
}

// mostlyHex says whether half of text's characters, or more, are hex
// digits (base64 of data holds one in three; xxd -r -p reads pairs with
// two other characters between them), and one of its stretches of
// minBase64Run holds a digit 0 to 9 and a letter a to f in 32 characters
// or more each, as isHexText asks of plain hex.
func mostlyHex(text []byte) bool {
	n := 0
	for _, c := range text {
		if xxdClass[c] == xxdDigit {
			n++
		}
	}
	return n >= len(text)/2 && someStretch(text, func(w []byte) bool {
		digits, letters := 0, 0
		for _, c := range w {
			switch {
			case c >= '0' && c <= '9':
				digits++
			case c|0x20 >= 'a' && c|0x20 <= 'f':
				letters++
			}
		}
		return digits >= len(w)/32 && letters >= len(w)/32
	})
}

// someStretch says whether one of text's stretches of minBase64Run (the
// last ends at text's end) is ok.
func someStretch(text []byte, ok func(w []byte) bool) bool {
	for i := 0; i < len(text); i += minBase64Run {
		if ok(text[max(0, min(i, len(text)-minBase64Run)):min(len(text), i+minBase64Run)]) {
			return true
		}
	}
	return false
}

// holdsHexLetters says whether one of text's stretches of 4,096 hex
// digits (or all of them, if fewer) holds a letter (a to f) and a
// decimal digit in 32 digits or more each, as hex of a program does:
// bytes whose every digit is 0 to 9 are no program, and text of decimal
// numbers, one a line (Perl's unicore tables), is none; nor is a run of
// one letter ("cccc…", a comment in a PAX record).
func holdsHexLetters(text []byte) bool {
	digits, letters := 0, 0
	for _, c := range text {
		if xxdClass[c] != xxdDigit {
			continue
		}
		digits++
		if c > '9' {
			letters++
		}
		if digits == 4096 {
			if min(letters, digits-letters) >= digits/32 {
				return true
			}
			digits, letters = 0, 0
		}
	}
	return digits > 0 && min(letters, digits-letters) >= digits/32
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// appendHexRun appends the payloads of text, a run of hex digits at
// offset, at both alignments.
func appendHexRun(out []payload, offset int, text []byte) []payload {
	for skip := range 2 {
		out = append(out, payload{offset: offset, skip: skip, text: text, enc: encHex})
	}
	return out
}

// decodeHexText appends to out text, hex digits, decoded from its skip-th
// character, an odd last digit left out.
func decodeHexText(out, text []byte, skip int) []byte {
	if skip >= len(text) {
		return out
	}
	t := text[skip:]
	t = t[:len(t)/2*2]
	n := len(out)
	out = append(out, make([]byte, len(t)/2)...)
	k, _ := hex.Decode(out[n:], t)
	return out[:n+k]
}

// byteEscapeAt says whether data[i:] starts a byte escape: "\x" and a hex
// digit, or "\" and an octal digit.
func byteEscapeAt(data []byte, i int) bool {
	if i+2 >= len(data) || data[i] != '\\' {
		return false
	}
	c := data[i+1]
	return c == 'x' && isHexDigit(data[i+2]) || c >= '0' && c <= '7'
}

// denseEscapes says whether data[i:] starts with a byte escape and holds
// 8 of them in its first 64 bytes, as a program written as escapes does
// at its header: a run is looked for only there, so that a program's
// stray backslashes and a source file's few escapes cost a comparison.
func denseEscapes(data []byte, i int) bool {
	if !byteEscapeAt(data, i) && !shellEscapeAt(data, i) {
		return false
	}
	n := 0
	for j := i; j < min(len(data), i+64); j++ {
		if data[j] == '\\' && byteEscapeAt(data, j) {
			if n++; n == 8 {
				return true
			}
		}
	}
	return false
}

// shellEscapeAt says whether data[i:] starts "\\" and a byte escape:
// what a shell's double quotes give printf as the escape ("\\x7f").
func shellEscapeAt(data []byte, i int) bool {
	return i+1 < len(data) && data[i] == '\\' && byteEscapeAt(data, i+1)
}

// appendEscapedRuns appends the payloads of the runs of byte escapes in
// data (see above): each run's text is its span of data, copied.
func appendEscapedRuns(out []payload, data []byte) []payload {
	if len(data) < minBase64Run {
		return out
	}
	for i := 0; i < len(data); {
		k := bytes.IndexByte(data[i:], '\\')
		if k < 0 {
			break
		}
		i += k
		if i > 0 && data[i-1] == '\\' || !denseEscapes(data, i) {
			i++
			continue
		}
		start := stringStart(data, i)
		es := escapeScan{r: bytes.NewReader(data[start:])}
		es.run()
		end := start + es.n
		if end-start >= minBase64Run && es.escapes >= minByteEscapes {
			text := bytes.Clone(data[start:end])
			p := payload{offset: start, text: text, enc: encEscaped, from: start, to: end}
			out = append(out, p)
			if es.zeroOctal {
				p.enc = encEscapedEcho
				out = append(out, p)
			}
		}
		i = max(end, i+1)
	}
	return out
}

// stringStart is where the string whose escape is at data[i] starts: its
// opening quote, when one stands before it on its line within 256 bytes with
// only its characters between (Python's repr starts b'ELF…'), or i.
func stringStart(data []byte, i int) int {
	for j := i - 1; j >= 0 && j >= i-256; j-- {
		switch data[j] {
		case '\'', '"':
			return j
		case '\n':
			return i
		}
	}
	return i
}

// decodeEscapes appends to out what the string run text (see
// escapeScan) stands for.
func decodeEscapes(out, text []byte, echo bool) []byte {
	es := escapeScan{r: bytes.NewReader(text), echo: echo, out: out, decode: true}
	es.run()
	return es.out
}

// escapeScan reads a run of strings holding byte escapes from r, as
// their holder reads them: n counts the bytes of r the run takes,
// escapes its byte escapes, zeroOctal whether one is "\0NNN"; out, when
// decode is set, gathers its bytes.
type escapeScan struct {
	r         io.ByteReader
	echo      bool
	decode    bool
	out       []byte
	n         int
	escapes   int
	zeroOctal bool
	// limit, when set, stops the scan once out holds that many bytes
	// (a stream reading a few KiB at a time, see escapedRun).
	limit int
	// the state between calls to step
	quote byte // the quote of the string the scan is in, 0 outside
	gap   int  // bytes passed over outside strings since the last of a string
	held  []byte
	done  bool
}

// maxEscapeGap is the most bytes between two strings of one run: a
// line's redirection to a long path and the next line's "printf '", a
// comment line between them (outside attack round 23b).
const maxEscapeGap = 256

// maxLiteral is how many characters of a string in a row the run takes
// without an escape: more ends it.
const maxLiteral = 64 << 10

func (es *escapeScan) run() {
	for !es.done && (es.limit == 0 || len(es.out) < es.limit) {
		es.step()
	}
}

// next reads a byte, or ends the run.
func (es *escapeScan) next() (byte, bool) {
	if len(es.held) > 0 {
		c := es.held[0]
		es.held = es.held[1:]
		return c, true
	}
	c, err := es.r.ReadByte()
	if err != nil {
		es.done = true
		return 0, false
	}
	return c, true
}

// peek is the next byte, left to be read.
func (es *escapeScan) peek() (byte, bool) {
	c, ok := es.next()
	if ok {
		es.held = append(es.held[:0], c)
	}
	return c, ok
}

func (es *escapeScan) emit(c byte) {
	if es.decode {
		es.out = append(es.out, c)
	}
}

// step reads one character, or one escape, of the run.
func (es *escapeScan) step() {
	c, ok := es.next()
	if !ok {
		return
	}
	switch {
	case c == '\\':
		es.escape()
	case es.quote == 0 && (c == '\'' || c == '"'):
		es.quote, es.gap = c, 0
		es.n++
	case es.quote == 0:
		if es.gap++; es.gap > maxEscapeGap {
			es.done = true
			return
		}
		es.n++
	case c == es.quote:
		es.quote, es.gap = 0, 0
		es.n++
	default:
		if es.gap++; es.gap > maxLiteral {
			es.done = true
			return
		}
		es.emit(c)
		es.n++
	}
}

// escape reads the escape whose backslash was just read.
func (es *escapeScan) escape() {
	c, ok := es.peek()
	if !ok {
		return
	}
	es.held = es.held[:0]
	if es.quote == 0 {
		// Outside a string an escape is none of the payload's bytes: a
		// PDF's strings, in parentheses, hold octal escapes too.
		if es.gap += 2; es.gap > maxEscapeGap {
			es.done = true
			return
		}
		es.n += 2
		return
	}
	switch {
	case c == 'x':
		d, ok := es.peek()
		if !ok || !isHexDigit(d) {
			es.literalEscape('x')
			return
		}
		es.held = es.held[:0]
		v, k := hexValue(d), 3
		if d, ok := es.peek(); ok && isHexDigit(d) {
			es.held = es.held[:0]
			v, k = v<<4|hexValue(d), 4
		}
		es.byteEscape(v, k)
	case c >= '0' && c <= '7':
		v, k, max := c-'0', 2, 3
		if c == '0' && es.echo {
			v, max = 0, 4 // "\0" and up to three digits
		}
		for k-1 < max {
			d, ok := es.peek()
			if !ok || d < '0' || d > '7' {
				break
			}
			es.held = es.held[:0]
			if k == 4 && c == '0' {
				es.zeroOctal = true
			}
			v, k = v<<3|(d-'0'), k+1
		}
		if c == '0' && k == 4 {
			// "\0NN" and maybe a digit after: echo -e reads it otherwise.
			if d, ok := es.peek(); ok && d >= '0' && d <= '7' {
				es.zeroOctal = true
			}
		}
		es.byteEscape(v, k)
	case c == '\n': // a line continued
		es.n += 2
	case c == '\\' && es.quote == '"':
		// A shell's double quotes make "\\" one backslash: "\\x7f" is
		// printf's escape (in a Python string it would be text).
		if d, ok := es.peek(); ok && (d == 'x' || d >= '0' && d <= '7') {
			es.n++
			es.escape()
			return
		}
		es.literalEscape(c)
	default:
		es.literalEscape(c)
	}
}

func (es *escapeScan) byteEscape(v byte, k int) {
	es.emit(v)
	es.escapes++
	es.gap = 0
	es.n += k
}

// literalEscape is the escape "\c" in a string: its byte, or both
// characters where c escapes nothing (printf and Python keep those).
func (es *escapeScan) literalEscape(c byte) {
	es.n += 2
	es.gap = 0
	if es.quote == 0 {
		return
	}
	if b, ok := charEscapes[c]; ok {
		es.emit(b)
		return
	}
	es.emit('\\')
	es.emit(c)
}

// charEscapes are the escapes of one character that printf, echo -e and
// Python read as a byte.
var charEscapes = map[byte]byte{
	'n': '\n', 't': '\t', 'r': '\r', 'a': 7, 'b': 8, 'f': '\f', 'v': '\v', 'e': 0x1b,
	'\\': '\\', '\'': '\'', '"': '"',
}

// escapedRun streams a run of strings holding byte escapes (see
// escapeScan), for one longer than a window (see longRun).
type escapedRun struct {
	es  escapeScan
	buf []byte
}

func newEscapedRun(r *bufio.Reader, echo bool) *escapedRun {
	return &escapedRun{es: escapeScan{r: r, echo: echo, decode: true, limit: 3 << 10}}
}

func (e *escapedRun) Read(p []byte) (int, error) {
	for len(e.buf) == 0 {
		if e.es.done {
			return 0, io.EOF
		}
		e.es.out = e.es.out[:0]
		e.es.run()
		e.buf = e.es.out
	}
	k := copy(p, e.buf)
	e.buf = e.buf[k:]
	return k, nil
}

// taken is how many bytes of its reader the run took.
func (e *escapedRun) taken() int64 { return int64(e.es.n) }

// Hex as xxd -r -p reads it: "7f 45 4c", "7f:45:4c", xxd -i's C array
// "0x7f, 0x45", groups of any size, a digit a line. xxd -r -p passes
// over white space, even between a byte's two digits, takes hex digits
// in pairs, drops a lone digit before any other character, and skips the
// rest of a line at three of those in a row (see xxdReader). Such text is
// not a chain of base64 pieces (its tokens are too short to be pieces),
// so it is found on its own: at probes 2 KiB apart, as base64 is, where
// the 64 characters past the probe that are not white space are half
// hex digits or more; and read back and forth from there while that
// holds. A run of plain hex alone is left to the chain (see plainHex).

// xxdWindow looks at the 64 characters of data from i on that are not
// white space, within 4 KiB: ok says they look like hex for xxd -r -p
// (32 digits or more, at least as many as other characters, at most 4
// letters but x, so that words and JSON's \u escapes are none; a line's
// rest after three other characters in a row is passed over, as xxd -r
// -p passes over it), digits counts the digits, and next is where they
// end.
func xxdWindow(data []byte, i int) (ok bool, digits, next int) {
	var seen, other, letters, junk int
	j := max(i, 0)
	for ; j < len(data) && j < i+4096 && seen < 64; j++ {
		switch xxdClass[data[j]] {
		case xxdWhite:
			continue
		case xxdDigit:
			seen++
			digits++
			junk = 0
			continue
		case xxdLetter:
			letters++
		}
		seen++
		other++
		// Past 4 letters or 32 others the window is none: a program's
		// bytes and a text's words end it here, not 64 characters on.
		if letters > 4 || other > 32 {
			return false, digits, j + 1
		}
		// At three others in a row xxd -r -p passes over the rest of
		// the line: so does the window.
		if junk++; junk == 3 && seen < 64 {
			k := bytes.IndexByte(data[j:min(len(data), i+4096)], '\n')
			if k < 0 {
				j = min(len(data), i+4096)
				break
			}
			j += k
			junk = 0
		}
	}
	return seen == 64 && digits >= 32 && other <= digits && letters <= 4, digits, j
}

// xxdClass sorts bytes for xxdWindow: white space, hex digits, letters
// but x (words), others. Quotes are white space to it: the strings a
// shell or Python joins ('7f' '45', '7f'+'45', an escaped quote between
// two strings) are one run, whose quotes are taken out when its text
// starts at one (see unquote).
var xxdClass = func() (t [256]uint8) {
	for c := range 256 {
		switch b := byte(c); {
		case xxdSpace(b), b == '\'', b == '"':
			t[c] = xxdWhite
		case isHexDigit(b):
			t[c] = xxdDigit
		case b|0x20 >= 'g' && b|0x20 <= 'z' && b|0x20 != 'x':
			t[c] = xxdLetter
		}
	}
	return t
}()

const (
	xxdOther = iota
	xxdWhite
	xxdDigit
	xxdLetter
)

// xxdSpace says whether xxd -r -p passes over c wherever it stands.
func xxdSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// appendHexPairRuns appends the payloads of data's runs of hex as xxd
// -r -p reads it, each read twice: from its first digit and from its
// second, for a run that starts amid other text whose digits xxd would
// have taken first.
func appendHexPairRuns(out []payload, data []byte) []payload {
	if len(data) < minBase64Run {
		return out
	}
	const step = minBase64Run / 2
	done := 0
	var escaped []payload // runs of escapes are read as such, not again as hex
	for _, p := range out {
		if p.enc == encEscaped || p.enc == encEscapedEcho {
			escaped = append(escaped, p)
		}
	}
	for p := step - 1; p < len(data); p += step {
		if p < done || inEscapedRun(escaped, p) {
			continue
		}
		if ok, _, _ := xxdWindow(data, p); !ok {
			continue
		}
		// Back and on from there, plain hex too: a dump may be written
		// both ways (7f 45 4c, then xxd -p's lines). Back by 64 bytes,
		// or, where that lands in a line xxd -r -p passes over (a
		// comment between lines of hex), to that line's start.
		// A window taken is one that holds and reaches the run's start,
		// so that no text it does not hold stands between them (a
		// string of hex digits before the command whose argument the
		// run is).
		reaches := func(i, start int) bool {
			ok, _, next := xxdWindow(data, i)
			return ok && next >= start
		}
		start := p
		for start > done {
			i := max(done, start-64)
			if !reaches(i, start) {
				lo := max(done, i-4096)
				k := bytes.LastIndexByte(data[lo:i], '\n')
				if k < 0 && lo > done {
					break // no line's start within 4 KiB
				}
				i = lo + k + 1
				if i >= start || !reaches(i, start) {
					break
				}
			}
			start = i
		}
		// The first of the 64 characters before it a window holds from.
		for i := max(done, start-64); i < start; i++ {
			if reaches(i, start) {
				start = i
				break
			}
		}
		from, quoted := hexRunStart(data, done, start)
		end, digits := hexRunEnd(data, start)
		end = hexTail(data, end)
		done = max(end, p+1)
		if end-from < minBase64Run || digits < minBase64Run/4 || !holdsHexLetters(data[from:end]) || plainHex(data[from:end]) {
			continue
		}
		text := bytes.Clone(data[from:end])
		if quoted {
			text = unquote(text)
		}
		for skip := range 2 {
			out = append(out, payload{offset: from, skip: skip, text: text, enc: encHexPairs, quoted: quoted, from: from, to: end})
		}
	}
	return out
}

// hexRunStart is where the text of a run of hex pairs whose first window
// starts at data[start] starts, as the host's tool gets it, and whether
// it is quoted. Quoted, it starts at the first quote of the quoted
// strings before it on its line that hold nothing but hex and
// separators: the command's argument (echo '7f' '45 4c …' | xxd -r -p,
// bytes.fromhex('7f 45' '4c …')), the line's other text being the
// command's, and its quotes are taken out (see unquote). Else it starts
// at its line's start, where a here-document's text starts (a line of
// other text before it is one xxd -r -p passes over), when that is
// within 64 bytes; else at start. A window holds from no more than two
// other characters before a run (at three, xxd -r -p and the window pass
// over the line, and quotes are white space to it), so a quote opening
// it is the character before start or within its first window, on the
// line of its hex.
func hexRunStart(data []byte, done, start int) (from int, quoted bool) {
	lo := max(done, start-4096)
	if k := bytes.LastIndexByte(data[lo:start], '\n'); k >= 0 {
		lo += k + 1
	}
	q := start // the character before start that is not white space, on its line
	for q > lo && xxdSpace(data[q-1]) {
		q--
	}
	q = max(lo, q-1)
	_, _, end := xxdWindow(data, start)
	if first := openingQuote(data, q, end); first >= 0 {
		lo := max(done, first-4096)
		if k := bytes.LastIndexByte(data[lo:first], '\n'); k >= 0 {
			lo += k + 1
		}
		for i := first - 1; i >= lo; i-- {
			c := data[i]
			if c == '\'' || c == '"' {
				first = i
			} else if xxdClass[c] != xxdDigit && c != ' ' && c != '\t' && c != '\\' && c != '+' && c != ',' && c != ':' {
				break
			}
		}
		return first, true
	}
	if k := bytes.LastIndexByte(data[max(done, start-64):start], '\n'); k >= 0 {
		return max(done, start-64) + k + 1, false
	}
	return start, false
}

// openingQuote is the last quote in data[from:to] that 16 hex digits
// follow within 64 bytes on its line, or -1: a quote that opens a string
// of hex, not one that closes another (a here-document's 'EOF'), and
// the last, should a string of hex digits stand before it on the line
// (x = 'aaaa…'; y = bytes.fromhex('7f 45 …')).
func openingQuote(data []byte, from, to int) int {
	last := -1
	for i := from; i < to; i++ {
		if data[i] != '\'' && data[i] != '"' {
			continue
		}
		n := 0
		for _, c := range data[i+1 : min(len(data), i+65)] {
			if c == '\n' {
				break
			}
			if xxdClass[c] == xxdDigit {
				n++
			}
		}
		if n >= 16 {
			last = i
		}
	}
	return last
}

// unquote is text without its quotes, and a backslash before one: the
// strings a shell or Python joins ('7f' '45', '7f'"45", an escaped quote
// between two strings for a quote among them, which xxd -r -p passes
// over as one character of junk).
func unquote(text []byte) []byte {
	out := text[:0]
	for i, c := range text {
		if c == '\'' || c == '"' || c == '\\' && i+1 < len(text) && (text[i+1] == '\'' || text[i+1] == '"') {
			continue
		}
		out = append(out, c)
	}
	return out
}

// plainHex says whether text is plain hex, read as a chain of pieces
// (see isHexText): tokens of 16 hex digits or more between white space,
// but for its last.
func plainHex(text []byte) bool {
	run, short := 0, false
	for _, c := range text {
		switch xxdClass[c] {
		case xxdDigit:
			if short {
				return false
			}
			run++
		case xxdWhite:
			short = short || run > 0 && run < 16
			run = 0
		default:
			return false
		}
	}
	return true
}

// hexRunEnd is where a run of hex pairs whose first window starts at
// data[start] ends, window after window (see nextHexWindow), and how
// many digits it holds.
func hexRunEnd(data []byte, start int) (end, digits int) {
	end = start
	for end < len(data) {
		ok, d, next := nextHexWindow(data, end)
		if !ok {
			break
		}
		end, digits = next, digits+d
	}
	return end, digits
}

// nextHexWindow is xxdWindow of the window of a run at
// data[i]; one that starts inside a line xxd -r -p passes over (a
// comment after each line of hex, whose first characters the window
// before took) is tried again from the next line. It looks 8 KiB ahead
// at most.
func nextHexWindow(data []byte, i int) (ok bool, digits, next int) {
	if ok, digits, next = xxdWindow(data, i); !ok {
		if k := bytes.IndexByte(data[i:min(len(data), i+4096)], '\n'); k >= 0 {
			ok, digits, next = xxdWindow(data, i+k+1)
		}
	}
	return ok, digits, next
}

// hexTail is where a run of hex whose last whole window of 64
// characters ends at data[end] ends: past the lines after it (the first
// from end, within 4 KiB) whose characters that are not white space are
// half hex digits or more, 64 such characters at most and none past
// three others in a row, so that the last bytes of a dump whose window
// takes in the text after it (a here-document's delimiter) are read
// too.
func hexTail(data []byte, end int) int {
	stop := min(len(data), end+4096)
	for seen := 0; end < stop && seen < 64; {
		line := data[end:stop]
		if k := bytes.IndexByte(line, '\n'); k >= 0 {
			line = line[:k+1]
		}
		n, digits, other, junk := 0, 0, 0, 0
		for ; n < len(line) && seen+digits+other < 64 && junk < 3; n++ {
			switch c := line[n]; {
			case xxdSpace(c):
			case isHexDigit(c):
				digits, junk = digits+1, 0
			default:
				other, junk = other+1, junk+1
			}
		}
		if other > digits {
			break
		}
		seen += digits + other
		if end += n; junk == 3 {
			break // xxd -r -p passes over the rest of the line
		}
	}
	return end
}

// decodeHexPairs appends to out what xxd -r -p writes of text, its
// first skip hex digits left out.
func decodeHexPairs(out, text []byte, skip int) []byte {
	d := newXxdDecoder(skip)
	return d.decode(out, text)
}

// xxdDecoder is xxd -r -p over text given in pieces: its reader's state,
// the digits still to leave out, and whether the rest of a line is passed
// over.
type xxdDecoder struct {
	x    xxdReader
	skip int
	eol  bool
}

func newXxdDecoder(skip int) *xxdDecoder {
	return &xxdDecoder{x: xxdReader{n1: -1, ignore: true}, skip: skip}
}

// decode appends to out what xxd -r -p writes of text, the next piece.
func (d *xxdDecoder) decode(out, text []byte) []byte {
	for i := 0; i < len(text); i++ {
		if d.eol {
			k := bytes.IndexByte(text[i:], '\n')
			if k < 0 {
				break
			}
			i += k
			d.eol, d.x.ignore = false, true
			continue
		}
		c := text[i]
		if d.skip > 0 && isHexDigit(c) {
			d.skip--
			continue
		}
		b, ok, eol := d.x.next(c)
		if ok {
			out = append(out, b)
		}
		d.eol = eol
	}
	return out
}

// hexPairsRun reads a run of hex pairs longer than a window (see
// longRun) as appendHexPairRuns reads one within a window: window by
// window of 64 characters that are not white space (xxdWindow), the first
// taken as the finder took it, then the run's tail (hexTail), decoded as
// xxd -r -p decodes them.
// A quoted run (see hexRunStart) has its quotes taken out, piece by
// piece, as the run's text within a window is.
type hexPairsRun struct {
	filled
	r      *bufio.Reader
	d      *xxdDecoder
	quoted bool
	n      int64
}

func newHexPairsRun(r *bufio.Reader, skip int, quoted bool) *hexPairsRun {
	// fill peeks 16 KiB: a smaller buffer would end the run there.
	return &hexPairsRun{r: bufio.NewReaderSize(r, 64<<10), d: newXxdDecoder(skip), quoted: quoted}
}

// taken is how many bytes of its reader the run took.
func (h *hexPairsRun) taken() int64 { return h.n }

func (h *hexPairsRun) Read(p []byte) (int, error) { return h.read(p, h.fill) }

// fill decodes the windows that start in the next 8 KiB (a window looks
// 8 KiB ahead, a tail 4 KiB), or the run's last ones and its tail.
func (h *hexPairsRun) fill() {
	buf, err := h.r.Peek(16 << 10)
	eof := err != nil
	i := 0
	for eof || i+8192 <= len(buf) {
		ok, _, next := nextHexWindow(buf, i)
		if !ok && !(h.n == 0 && i == 0 && next > 0) {
			i, h.done = hexTail(buf, i), true
			break
		}
		i = next
	}
	piece := buf[:i]
	if h.quoted {
		piece = unquote(bytes.Clone(piece))
	}
	h.out = h.d.decode(h.out[:0], piece)
	h.n += int64(i)
	if _, err := h.r.Discard(i); err != nil || i == 0 {
		h.done = true
	}
}

// xxdReader is xxd -r -p's state (xxd.c, huntype, for the PostScript
// plain style): the last three characters' values (-1 for no digit) and
// whether other characters are passed over, as at a line's start after
// garbage.
type xxdReader struct {
	n1, n2, n3 int
	ignore     bool
}

// next takes c: the byte it completes, if any, and whether the rest of
// the line is skipped.
func (x *xxdReader) next(c byte) (b byte, ok, eol bool) {
	if xxdSpace(c) {
		return 0, false, false
	}
	x.n3, x.n2, x.n1 = x.n2, x.n1, -1
	if isHexDigit(c) {
		x.n1 = int(hexValue(c))
	}
	if x.n1 < 0 && x.ignore {
		return 0, false, false
	}
	x.ignore = false
	switch {
	case x.n2 >= 0 && x.n1 >= 0:
		b = byte(x.n2<<4 | x.n1)
		x.n1 = -1
		return b, true, false
	case x.n1 < 0 && x.n2 < 0 && x.n3 < 0:
		return 0, false, true
	}
	return 0, false, false
}

// inEscapedRun says whether data[i] is in one of the runs of escapes in
// ps.
func inEscapedRun(ps []payload, i int) bool {
	for _, p := range ps {
		if p.from <= i && i < p.to {
			return true
		}
	}
	return false
}
