package scanner

import (
	"bytes"
	"unicode/utf8"
)

// Base64 written with its holder's escapes: a JSON value with "\u002b"
// for "+" or every tenth character as "\u0041", an XML or HTML value
// with "&#43;", "&#x2F;" or "&#61;", a YAML one with "\x2b". jq -r,
// json.load and ElementTree give back the plain base64. The pieces
// between the escapes are a chain like any other (an escape is a short
// gap, its digits a word or the head of the piece after it), but the
// chain's characters hold the escapes' text in place of the characters
// they stand for, and decode wrong. So a chain long enough to be decoded
// whose bytes hold such an escape is unescaped, and the copy searched
// again; its payloads are named after the chain's offset in the file
// (see payload.name). A file with no long chain, or whose long chains
// hold no escape, pays nothing more.

// appendChainOf appends the payloads of the chain that starts with the
// piece first (see appendChain) and, when unescape is set and its
// holder's escapes write some of its characters, those of the chain
// unescaped; it returns where the chain ends.
func appendChainOf(out []payload, data []byte, first piece, unescape bool) ([]payload, int) {
	n := len(out)
	out, end := appendChain(out, data, first)
	if unescape {
		out = appendUnescaped(out, data, first.start, end)
	}
	for k := n; k < len(out); k++ {
		out[k].from, out[k].to = first.start, end
	}
	return out, end
}

// appendUnescaped appends the payloads of data[start:end], a chain,
// unescaped: the backslash of an escape that opens the chain's first
// piece ("\u0041…") and the escapes that end the value ("&#61;&#61;")
// are taken in. The copy is searched as a file is, but not unescaped
// again: an escape written with escapes is read by nothing that runs.
func appendUnescaped(out []payload, data []byte, start, end int) []payload {
	if start > 0 && data[start-1] == '\\' {
		start--
	}
	for {
		i, ok := escapeEndingAt(data, start)
		if !ok {
			break
		}
		start = i
	}
	for end < len(data) {
		n, ok := base64Escape(data, end)
		if !ok {
			break
		}
		end += n
	}
	if end-start < minBase64Run || !holdsBase64Escape(data[start:end]) {
		return out
	}
	for _, p := range probePayloads(unescapeText(data[start:end]), false) {
		p.span, p.unescaped = start, true
		out = append(out, p)
	}
	return out
}

// holdsBase64Escape says whether s holds an escape that stands for a
// character of the base64 alphabet, or a line break or a tab: a value
// wrapped with JSON's "\n" (as json.dumps writes base64 wrapped at 76)
// has each "n" glued to the next line's characters. "\/" is none: the
// backslash is a gap between two pieces, and the chain reads right
// without it.
func holdsBase64Escape(s []byte) bool {
	return holdsEscapeAt(s, '\\') || holdsEscapeAt(s, '&')
}

// holdsEscapeAt is holdsBase64Escape for the escapes that start with c,
// found a byte at a time by bytes.IndexByte, much faster over long base64
// than a look at each byte.
func holdsEscapeAt(s []byte, c byte) bool {
	for i := 0; i < len(s); i++ {
		j := bytes.IndexByte(s[i:], c)
		if j < 0 {
			return false
		}
		i += j
		if _, ok := base64Escape(s, i); ok && s[i+1] != '/' || lineEscape(s, i) {
			return true
		}
	}
	return false
}

// lineEscape says whether an escape for a line break or a tab starts at
// data[i] ("\n", "\r", "\t", "\u000a", "&#10;").
func lineEscape(data []byte, i int) bool {
	r, n := escapeAt(data, i)
	return n > 0 && (r == '\n' || r == '\r' || r == '\t')
}

// base64Escape says whether an escape that stands for a character of the
// base64 alphabet starts at data[i], and how long it is.
func base64Escape(data []byte, i int) (int, bool) {
	r, n := escapeAt(data, i)
	return n, n > 0 && r < utf8.RuneSelf && isB64[r]
}

// unescapeText is s with its escapes replaced by the characters they
// stand for, in UTF-8 ("\n" a line break, so that the lines of a
// wrapped value join as a wrapped block's); any other byte is kept as it
// is.
func unescapeText(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		if r, n := escapeAt(s, i); n > 0 {
			out = utf8.AppendRune(out, r)
			i += n
			continue
		}
		out = append(out, s[i])
		i++
	}
	return out
}

// escapeAt reads the escape at data[i:]: JSON's "\uXXXX" (a character of
// the Basic Multilingual Plane, no surrogate), "\/", "\n", "\r", "\t",
// "\xHH", and XML's
// and HTML's numeric references "&#DDD;" and "&#xHHH;" (either case). It
// returns the character and the escape's length, 0 when none starts
// there.
func escapeAt(data []byte, i int) (rune, int) {
	if i+1 >= len(data) {
		return 0, 0
	}
	switch {
	case data[i] == '\\' && data[i+1] == '/':
		return '/', 2
	case data[i] == '\\' && data[i+1] == 'n':
		return '\n', 2
	case data[i] == '\\' && data[i+1] == 'r':
		return '\r', 2
	case data[i] == '\\' && data[i+1] == 't':
		return '\t', 2
	case data[i] == '\\' && data[i+1] == 'u':
		r, ok := hexRune(data, i+2, 4)
		if !ok || r >= 0xd800 && r < 0xe000 {
			return 0, 0
		}
		return r, 6
	case data[i] == '\\' && data[i+1] == 'x':
		r, ok := hexRune(data, i+2, 2)
		if !ok {
			return 0, 0
		}
		return r, 4
	case data[i] == '&' && data[i+1] == '#':
		return numericReference(data, i+2)
	}
	return 0, 0
}

// hexRune reads n hex digits at data[i:].
func hexRune(data []byte, i, n int) (rune, bool) {
	if i+n > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+n] {
		d, ok := hexDigit(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | d
	}
	return r, true
}

func hexDigit(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// numericReference reads the rest of "&#DDD;" or "&#xHHH;" from
// data[i:], just past "&#": the character and the length of the whole
// reference, 0 when it is none (no digit, no ";", more than 7 digits, no
// character).
func numericReference(data []byte, i int) (rune, int) {
	start := i - 2
	base := rune(10)
	if i < len(data) && (data[i] == 'x' || data[i] == 'X') {
		base = 16
		i++
	}
	var r rune
	digits := 0
	for ; i < len(data) && digits <= 7; i++ {
		d, ok := hexDigit(data[i])
		if !ok || d >= base {
			break
		}
		r = r*base + d
		digits++
	}
	if digits == 0 || digits > 7 || i >= len(data) || data[i] != ';' || !utf8.ValidRune(r) {
		return 0, 0
	}
	return r, i + 1 - start
}

// escapedPiece says whether the short segment data[a:b] stands next to
// an escape of its value: it opens with one ("u0041BCD" of "\u0041BCD",
// "/BCD" of "\/BCD"), follows a numeric reference ("BCD" of
// "&#65;BCD") or comes before an escape ("ABC" of "ABC&#43;"). Such a
// segment is a piece wherever it stands: a value with every tenth
// character escaped is all short segments, and its first and last stand
// after and before the holder's markup ("<d>ABC&#43;").
func escapedPiece(data []byte, a, b int) bool {
	if b < len(data) && (data[b] == '\\' || data[b] == '&') {
		if _, ok := base64Escape(data, b); ok {
			return true
		}
	}
	switch {
	case a == 0:
		return false
	case data[a-1] == '\\' && (data[a] == 'u' || data[a] == '/'):
		// Only what goes on past the escape: a table of escaped
		// characters ('\u0041', '\u0042') is no value.
		n, ok := base64Escape(data, a-1)
		return ok && b > a-1+n
	case data[a-1] == ';':
		_, ok := escapeEndingAt(data, a)
		return ok
	}
	return false
}

// escapeEndingAt is the start of the escape for a character of the
// base64 alphabet that ends just before data[a], if one does.
func escapeEndingAt(data []byte, a int) (int, bool) {
	for _, n := range []int{6, 4, 2} { // \uXXXX, \xHH, \/
		if a >= n && data[a-n] == '\\' {
			if m, ok := base64Escape(data, a-n); ok && m == n {
				return a - n, true
			}
		}
	}
	if a > 0 && data[a-1] == ';' {
		for i := a - 3; i >= 0 && i >= a-11; i-- {
			if data[i] == '&' {
				n, ok := base64Escape(data, i)
				return i, ok && i+n == a
			}
		}
	}
	return 0, false
}
