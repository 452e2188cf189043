package scanner

import "bytes"

// How a payload's pieces are joined back into one run of base64, as the
// shell or the language that holds them joins them: '"AAAA"'BBBB'',
// P="${P}BBBB", P+=BBBB, { echo AAAA; echo BBBB; }, "AAAA" + "BBBB",
// ''.join(['AAAA', 'BBBB']), a here-document indented with tabs. Rather
// than one rule per form, the text is cut into pieces (stretches of the
// base64 alphabet that stand as data) and consecutive pieces a few bytes
// apart are one run, whatever lies between them: quotes, spaces, line
// breaks, "\", "+", ".", an echo, a variable's name. The run's text is
// the pieces' characters, so a payload cut anywhere decodes whole.

const (
	// minPiece is how long a stretch of base64 is to be a piece wherever
	// it stands; a shorter one is a piece only where it stands as data
	// (see pieceAt), so words between pieces ("echo", "P" of "${P}",
	// "join") are not taken into the payload.
	minPiece = 16
	// maxGap is the most bytes between two pieces of one run: enough for
	// '"\nP="${P}', '; echo -n "', '",\n        "' and their like, and
	// for the names of appends ('"\nNAME="${NAME}'), which are not
	// counted in it (see maxNameCredit).
	maxGap = 48
	// maxNameCredit is the most bytes of one variable's name not counted
	// in a gap, for names of minPiece characters or more (a shorter one
	// fits in maxGap: 'P="${P}' for names up to 21): an append
	// 'NAME="${NAME}…"' joins for names of up to 64 characters, while a
	// gap of plain bytes stays at maxGap, which keeps a probe's look short.
	maxNameCredit = 64
	// maxWords is the most words (segments of the alphabet that are no
	// piece) between two pieces of one run: "P=", "P" of
	// '"\nP="${P}', "echo", "n" of "; echo -n ", "+". A command
	// line between two values ("' | base64 -d | tar xz -C /tmp") has
	// more.
	maxWords = 3
)

// isB64 marks the bytes of the standard base64 alphabet and its padding.
var isB64 = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = true
	}
	return t
}()

// piece is data[start:end], a stretch of base64 that stands as data.
type piece struct {
	start, end int
	padded     bool // ends in "=", which ends its run
	line       bool // a whole line past its indent, as a wrapped block's
	bare       bool // short, and set off by nothing but a line's start
	cont       bool // followed by "\": the line goes on on the next one
	array      bool // an element of a bash array (see payloadarrays.go)
	later      bool // an element after the first, known by the one before it
}

func (p piece) len() int { return p.end - p.start }

// segmentAt is where the segment of base64 that starts at a ends: after
// its characters and the padding that follows them ("P=QUJD" is the two
// segments "P=" and "QUJD"). A segment starts where a stretch of the
// alphabet starts or after padding (see segmentStart).
func segmentAt(data []byte, a int) int {
	b := a
	for b < len(data) && isB64[data[b]] && data[b] != '=' {
		b++
	}
	for b < len(data) && data[b] == '=' {
		b++
	}
	return b
}

// bodyEnd is where the characters of the segment data[a:b] end and its
// padding ("=") starts: b when it has none, a when it is all padding.
func bodyEnd(data []byte, a, b int) int {
	for b > a && data[b-1] == '=' {
		b--
	}
	return b
}

// segmentStart is the start of the segment that holds data[i], a base64
// character.
func segmentStart(data []byte, i int) int {
	for i > 0 && isB64[data[i-1]] && (data[i-1] != '=' || data[i] == '=') {
		i--
	}
	return i
}

// pieceAt says whether the segment data[a:b] is a piece, and which.
// Padding alone is not, nor is a short segment that ends in "=" and goes
// on or is set off by a line's start alone (a name being assigned: "P=",
// "P+=", 'P="'). A segment of minPiece or more is; a shorter one is when
// it has a letter or a digit (an operator "+" is none) and stands as data: after a quote, a "}" ("${P}AB"), an
// assignment or the start of a line (past its indent), and before a
// quote, a "\" or the end of a line.
func pieceAt(data []byte, a, b int) (piece, bool) {
	long := b-a >= minPiece
	before, after := byte('\n'), byte('\n')
	if a > 0 {
		before = data[a-1]
	}
	if b < len(data) {
		after = data[b]
	}
	// Most short words stand after a space, a "(" or a ".", and most
	// short stretches in a binary between bytes of no meaning: one look
	// at the bytes around them says they are no piece.
	escaped, element := false, false
	if !long && (pieceEdge[before]&edgeOpens == 0 || pieceEdge[after]&edgeCloses == 0) {
		switch {
		case (before == '\\' || before == ';' || after == '\\' || after == '&') && escapedPiece(data, a, b):
			escaped = true
		case before == '(' && arrayElementStart(data, a, b):
			element = true
		default:
			return piece{}, false
		}
	}
	body := bodyEnd(data, a, b)
	if body == a {
		return piece{}, false
	}
	if !long && (body < b && b < len(data) && isB64[data[b]] || !escaped && !hasAlnum(data[a:body])) {
		return piece{}, false
	}
	if isName(data, a, b) || stringPrefix(data, a, b) {
		return piece{}, false
	}
	opensValue := pieceEdge[before]&edgeValue != 0 || escaped || element
	opensLine, closesLine := startsLine(data, a), endsLine(data, b)
	if !long && !escaped && !element && !((opensValue || opensLine) && (after == '"' || after == '\'' || after == '\\' || closesLine)) {
		if pieceEdge[before]&edgeElement == 0 || !arrayElementStart(data, a, b) {
			return piece{}, false
		}
		element, opensValue = true, true
	}
	// A name assigned a quoted value at a line's start ('P="…"'); a
	// block's last line ("QQ==") ends its line.
	if !long && body < b && !opensValue && !closesLine {
		return piece{}, false
	}
	if !long && (isKey(data, b) || hereDelimiter(data, a)) {
		return piece{}, false
	}
	if !element && pieceEdge[before]&edgeElement != 0 {
		element = arrayElementStart(data, a, b)
	}
	return piece{
		start: a, end: b,
		padded: body < b,
		line:   opensLine && closesLine,
		bare:   !long && !opensValue,
		cont:   b < len(data) && data[b] == '\\',
		array:  element,
	}, true
}

// isKey says whether a quote and ":" follow data[:b]: a key ("data": "…",
// 'data': …) names the value after it, and is none of it.
func isKey(data []byte, b int) bool {
	return b+1 < len(data) && (data[b] == '"' || data[b] == '\'') && data[b+1] == ':'
}

// What a byte next to a short segment may say: it may open a value
// (edgeOpens: a quote, "}", "=", or a line's start or indent), it opens
// one whatever stands before it (edgeValue), or it may close one
// (edgeCloses: a quote, "\\", or a line's end or trailing space).
const (
	edgeOpens = 1 << iota
	edgeValue
	edgeCloses
	edgeElement // a space, a line break or a quote: may stand before an array's first element
)

var pieceEdge = func() (t [256]byte) {
	for _, c := range []byte("\"'") {
		t[c] = edgeOpens | edgeValue | edgeCloses
	}
	t['}'], t['='] = edgeOpens|edgeValue, edgeOpens|edgeValue
	t['\\'] = edgeCloses
	for _, c := range []byte(" \t\n\r") {
		t[c] = edgeOpens | edgeCloses
	}
	for _, c := range []byte(" \t\n\r\"'") {
		t[c] |= edgeElement
	}
	return t
}()

// hereDelimiter says whether data[a:] is a here-document's quoted
// delimiter (<<'EOF', <<"EOF", <<-'EOF'), which names the block that
// follows and is none of it.
func hereDelimiter(data []byte, a int) bool {
	if a < 3 || (data[a-1] != '\'' && data[a-1] != '"') {
		return false
	}
	lead := data[:a-1]
	return bytes.HasSuffix(lead, []byte("<<")) || bytes.HasSuffix(lead, []byte("<<-"))
}

func hasAlnum(s []byte) bool {
	for _, c := range s {
		if c != '+' && c != '/' {
			return true
		}
	}
	return false
}

// startsLine says whether only a line's indent stands before data[a].
func startsLine(data []byte, a int) bool {
	for a > 0 && (data[a-1] == ' ' || data[a-1] == '\t') {
		a--
	}
	return a == 0 || data[a-1] == '\n' || data[a-1] == '\r'
}

// endsLine says whether only spaces stand from data[b] to its line's end.
func endsLine(data []byte, b int) bool {
	for b < len(data) && (data[b] == ' ' || data[b] == '\t') {
		b++
	}
	return b == len(data) || data[b] == '\n' || data[b] == '\r'
}

// nextPiece is the first piece that starts at or after i and no later
// than limit, where i is a segment's start or no base64 character; ok is
// false when there is none.
func nextPiece(data []byte, i, limit int) (piece, bool) {
	p, _, _, ok := searchPiece(data, i, limit)
	return p, ok
}

// searchPiece is nextPiece, also saying how far it read (no piece starts
// in data[i:seen]) and how many words (segments that are no piece) it
// passed. A variable's name it passes moves limit on by its length, up to
// maxNameCredit: names are not counted in a gap.
func searchPiece(data []byte, i, limit int) (p piece, seen, words int, ok bool) {
	for {
		for i < len(data) && i <= limit && !isB64[data[i]] {
			i++
		}
		if i >= len(data) || i > limit {
			return piece{}, i, words, false
		}
		b := segmentAt(data, i)
		if p, ok := pieceAt(data, i, b); ok {
			return p, i, words, true
		}
		if !stringPrefix(data, i, b) {
			words++
		}
		// Only a long name is credited (see maxNameCredit): a short one
		// fits in maxGap, and most segments in a binary are short.
		if b-i >= minPiece && isName(data, i, b) {
			limit += min(b-i, maxNameCredit)
		}
		i = b
	}
}

// prevPiece is the piece before q in q's chain: the last piece before q,
// when q is the piece after it (see nextInChain); ok is false when q
// starts its chain. A chain holds one run or more (see runFrom): its
// start is a run's start.
func prevPiece(data []byte, q piece) (piece, bool) {
	// One byte further back than a piece of the chain can end: maxGap
	// with no name between, or maxWords names more. The nearer look
	// is the common one, and cheap.
	last, found := lastPieceFrom(data, q.start-maxGap-1, q)
	if !found {
		last, found = lastPieceFrom(data, q.start-maxGap-maxWords*maxNameCredit-1, q)
	}
	if !found {
		return piece{}, false
	}
	next, ok := nextInChain(data, last)
	return last, ok && next.start == q.start
}

// lastPieceFrom is the last piece before q that a search from data[i]
// finds (one that holds data[i] included).
func lastPieceFrom(data []byte, i int, q piece) (piece, bool) {
	i = max(0, i)
	if isB64[data[i]] {
		i = segmentStart(data, i)
	}
	var last piece
	found := false
	for {
		p, ok := nextPiece(data, i, q.start-1)
		if !ok || p.start >= q.start {
			return last, found
		}
		last, found = p, true
		i = p.end
	}
}

// nextInChain is the piece after p in its chain: the next piece, when it
// starts no more than maxGap after p with no more than maxWords words
// between. A chain goes on past padding: base64 -d reads padded chunks
// one after another (see appendChain). A short piece alone on its line
// before a ")" is an array's last element, or a word: its chain ends
// there, as an array's does.
func nextInChain(data []byte, p piece) (piece, bool) {
	if p.array {
		if next, ok := nextElement(data, p); ok || p.later {
			return next, ok
		}
	}
	if p.bare && closedAfter(data, p.end) {
		return piece{}, false
	}
	next, _, words, ok := searchPiece(data, p.end, p.end+maxGap)
	return next, ok && words <= maxWords
}

// runFrom reads the run that starts with the piece first: it and the
// pieces that follow it in its chain while each joins (see joins), up to
// the first that ends in padding. It appends the run's characters to text
// and returns it with the run's last piece and where in text the run's
// first piece that is a whole line starts (-1 for none).
//
// A run that starts at an array's element goes on over elements alone on
// their lines, whatever their lengths, up to a ")": such an element is a
// piece wherever it stands, and its chain goes on to the next as a
// block's lines do, but bash joins the lines of an array of any lengths.
// What a run holds is read only forward from its chain's start, by the
// probe and the search of every byte alike, so it may depend on the
// pieces before.
func runFrom(data []byte, first piece, text []byte) ([]byte, piece, int) {
	var before piece // the piece before last, when has2
	last, has2 := first, false
	inArray := first.array
	lineAt := -1 // where in text the run's first piece that is a whole line starts
	if first.line {
		lineAt = len(text)
	}
	text = append(text, data[first.start:first.end]...)
	for !last.padded {
		next, ok := nextInChain(data, last)
		if !ok {
			return text, last, lineAt
		}
		inArray = inArray && bytes.IndexByte(data[last.end:next.start], ')') < 0
		if !(inArray && next.bare) && !joins(before, last, has2, next) {
			return text, last, lineAt
		}
		if lineAt < 0 && next.line {
			lineAt = len(text)
		}
		text = append(text, data[next.start:next.end]...)
		before, last, has2 = last, next, true
		inArray = inArray || next.array
	}
	return text, last, lineAt
}

// joins says whether next goes on a run whose last piece is last (and
// before it before, if has2). A short piece set off by nothing but its
// line's start and end (a line of a block wrapped narrower than minPiece,
// or a word: "DATA" closing a here-document) goes on only a line that
// continues ("\\") or as the next line of a wrapped block: one no longer
// than the line before, which is not itself shorter than the line before
// it (a shorter line is a block's last). An element of an array goes on
// with whatever its chain leads to: the element alone on its line after
// it is one bash joins.
func joins(before, last piece, has2 bool, next piece) bool {
	switch {
	case !next.bare || last.cont || last.array:
		return true
	case !last.line || next.len() > last.len():
		return false
	}
	return !has2 || !before.line || last.len() >= before.len()
}
