package scanner

// Blocks of short lines and of separately padded groups: base64 (or
// base32, base32hex, base2) wrapped in lines shorter than a piece whose
// lengths do not fall as a wrapped block's do (14, 15, 14, …; 1 to 40 at
// random), or written a byte at a time, each group padded on its own
// ("fw==RQ==…", "P4======…"). base64 -d and basenc -d read through the
// line breaks and the padding; base64's chains hold neither (a piece is
// 16 letters, a block's lines shorten only at its end, padding ends a
// run's piece). Such a block is found on its own, at probes 2 KiB apart:
// 64 bytes that are no white space, letters, padding, line breaks and
// indents alone up to them, 16 letters or more among them and three line breaks or three paddings, and 4 KiB
// of letters from there that look written in one of the encodings. The block is walked
// to its ends, its letters read as basencRun reads them (padding ends a
// group, the text goes on), and decoded in each encoding it is written
// in, from its first letter and from its first line's start, at each
// alignment.

// isBlockLetter marks the letters of a block: base64's, base64url's -
// and _ (a block is read as urlsafe_b64decode reads it), and padding.
var isBlockLetter = func() (t [256]bool) {
	for c := range t {
		t[c] = isB64[c] || c == '-' || c == '_'
	}
	return t
}()

// blockByteAt says whether data[i] is what a block is made of: its
// letters, padding, line breaks, and white space that indents a line
// (a <<- here-document's tabs, which the shell takes out), 64 bytes of
// it at most. White space inside a line is none: base64 -d and basenc -d
// stop at it (a table's columns, prose).
func blockByteAt(data []byte, i int) bool {
	switch c := data[i]; {
	case isBlockLetter[c] || c == '\n' || c == '\r':
		return true
	case c != ' ' && c != '\t':
		return false
	}
	for k := i - 1; k >= max(0, i-64); k-- {
		switch data[k] {
		case '\n':
			return true
		case ' ', '\t':
		default:
			return false
		}
	}
	return i < 64
}

// maxWindowSpace is how far a probe's window reaches for its 64 bytes
// that are not white space: a block or a run written a letter a line,
// or with spaces between letters, is looked at for as many letters as a
// dense one, while a file of white space costs at most this.
const maxWindowSpace = 4 << 10

// blockWindow says whether the 64 bytes at p that are not white space
// (within maxWindowSpace) may be inside a block of short lines or of
// separately padded groups (see above).
func blockWindow(data []byte, p int) bool {
	letters, breaks, pads, n := 0, 0, 0, 0
	for i := p; i < min(len(data), p+maxWindowSpace) && n < 64; i++ {
		c := data[i]
		if c != '\n' && c != '\r' && c != ' ' && c != '\t' {
			n++
		}
		switch {
		case !blockByteAt(data, i):
			return false
		case c == '\n':
			breaks++
		case c == '=':
			if i > 0 && data[i-1] != '=' {
				pads++
			}
		case c != '\r' && c != ' ' && c != '\t':
			letters++
		}
	}
	return letters >= 16 && (breaks >= 3 || pads >= 3)
}

// blockAhead says whether the letters of the block from p on, up to
// minBase64Run of them, 1 KiB at least, look written in one of the
// encodings a block is decoded in: a table of short lines of names and
// numbers costs a look at 4 KiB, not the walk of its whole.
func blockAhead(data []byte, p int) bool {
	var buf [minBase64Run]byte
	n := 0
	for i := p; i < len(data) && n < len(buf) && blockByteAt(data, i); i++ {
		if c := data[i]; isBlockLetter[c] && c != '=' {
			buf[n] = c
			n++
		}
	}
	w := buf[:n]
	if n < 1<<10 {
		return false
	}
	if looksEncoded(w) {
		return true
	}
	for _, k := range basencKinds {
		j := 0
		for j < len(w) && k.in(w[j]) {
			j++
		}
		if j >= 1<<10 && k.data(w[:j]) { // up to the block's end: words after it
			return true
		}
	}
	return false
}

// appendBlocks appends the payloads of data's blocks of short lines and
// of separately padded groups.
func appendBlocks(out []payload, data []byte) []payload {
	const step = minBase64Run / 2
	done := 0
	for p := step - 1; p < len(data); p += step {
		if p < done || !blockWindow(data, p) || !blockAhead(data, p) {
			continue
		}
		from, to := p, p
		for from > done && blockByteAt(data, from-1) {
			from--
		}
		for to < len(data) && blockByteAt(data, to) {
			to++
		}
		done = to
		starts := []int{from}
		if from > 0 && data[from-1] != '\n' {
			// Words before the block on its first line (a
			// here-document's marker, a key): also from the next line.
			for i := from; i < min(to, from+256); i++ {
				if data[i] == '\n' {
					starts = append(starts, i+1)
					break
				}
			}
		}
		for _, s := range starts {
			out = appendBlock(out, data, s, to)
		}
	}
	return out
}

// appendBlock appends the payloads of the block data[from:to] in each
// encoding it is written in.
func appendBlock(out []payload, data []byte, from, to int) []payload {
	text := make([]byte, 0, to-from)
	n := 0
	for _, c := range data[from:to] {
		if isBlockLetter[c] {
			text = append(text, c)
			if c != '=' {
				n++
			}
		}
	}
	if n < minBase64Run {
		return out
	}
	for from < to && !isBlockLetter[data[from]] {
		from++
	}
	if letters := lettersOf(text); looksEncoded(letters) {
		for skip := range 4 {
			out = append(out, payload{offset: from, skip: skip, text: text, enc: encBase64, stream: true, from: from, to: to})
		}
	}
	for _, seg := range basencSegments(text) {
		for skip := range basencs[seg.enc].group {
			out = append(out, payload{offset: from, skip: skip, text: seg.text, enc: seg.enc, stream: true, from: from, to: to})
		}
	}
	return out
}

// lettersOf is text without its padding.
func lettersOf(text []byte) []byte {
	out := make([]byte, 0, len(text))
	for _, c := range text {
		if c != '=' {
			out = append(out, c)
		}
	}
	return out
}
