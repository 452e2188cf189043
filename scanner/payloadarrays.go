package scanner

import "bytes"

// A bash array of unquoted elements: A=(p1 p2 …), over one line or many,
// joined by printf %s "${A[@]}". An element shorter than minPiece after
// a space stands as words do ("echo ABCD"), so it is a piece only by
// where it stands: the first element is one because "=(" opens its
// array (see arrayElementStart), and each element after it because the
// element before it is one, with nothing but spaces, line breaks,
// quotes, continued lines and comments between, or the start of an
// append to the same array (see nextElement and payloadarraygaps.go).
// The chain ends with the array (at ")" or whatever else stands there)
// unless the array is its first element alone ('N+=("…")', appended to
// one by one), which goes on as any piece does: a piece after the array
// can be known for the next in its chain only from a piece known
// wherever it stands. An element is thus known only from its array's
// start: the probe that lands inside an array looks back for its "=("
// (see arrayAround).

// arrayElementStart says whether the segment data[a:b] is the first
// element of an array: "=(" and spaces, line breaks or continued lines
// stand before it (within maxGap), and it ends where an element does.
func arrayElementStart(data []byte, a, b int) bool {
	i := a
	if i > 0 && (data[i-1] == '"' || data[i-1] == '\'') {
		i--
		if b >= len(data) || data[b] != data[i] {
			return false
		}
	} else if !endsElement(data, b) {
		return false
	}
	for i > 0 && a-i <= maxGap && (isSpace(data[i-1]) || data[i-1] == '\\' && data[i] == '\n') {
		i--
	}
	return i >= 2 && data[i-1] == '(' && data[i-2] == '='
}

// endsElement says whether an unquoted element may end before data[b]:
// at a space, a line break, a continued line, ")" or the data's end.
func endsElement(data []byte, b int) bool {
	return b >= len(data) || isSpace(data[b]) || data[b] == ')' || contAt(data, b)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// nextElement is the element after p, an element of an array, in its
// chain: the next segment after p's closing quote, if it has one, and
// the gap between elements (see elementGap), unquoted or in quotes.
func nextElement(data []byte, p piece) (piece, bool) {
	j := p.end
	if j < len(data) && (data[j] == '"' || data[j] == '\'') {
		j++
	}
	j, marked, ok := elementGap(data, j)
	if !ok || j >= len(data) {
		return piece{}, false
	}
	// A piece in a comment or in an append's start would be passed over.
	if marked {
		if _, inside := nextPiece(data, p.end, j-1); inside {
			return piece{}, false
		}
	}
	quote := byte(0)
	if data[j] == '"' || data[j] == '\'' {
		quote = data[j]
		j++
	}
	if j >= len(data) || !isB64[data[j]] {
		return piece{}, false
	}
	b := segmentAt(data, j)
	if q, ok := pieceAt(data, j, b); ok {
		return q, true
	}
	if quote != 0 && (b >= len(data) || data[b] != quote) || quote == 0 && !endsElement(data, b) {
		return piece{}, false
	}
	body := bodyEnd(data, j, b)
	if body == j {
		return piece{}, false
	}
	return piece{start: j, end: b, padded: body < b, array: true, later: true}, true
}

// arrayBody marks the bytes that stand between an array's "=(" and its
// elements: the base64 alphabet, spaces, line breaks, quotes and the
// backslash of a continued line.
var arrayBody = func() (t [256]bool) {
	t = isB64
	for _, c := range []byte(" \t\n\r\"'\\") {
		t[c] = true
	}
	return t
}()

// arrayOpen is where the body of the array that holds data[p] starts,
// just after its "=(", looked for back to data[from] over what an
// array's body holds and over comments.
func arrayOpen(data []byte, p, from int) (int, bool) {
	i := p
	for {
		for i > from && arrayBody[data[i-1]] {
			i--
		}
		if i >= 2 && data[i-1] == '(' && data[i-2] == '=' {
			return i, true
		}
		h, ok := commentBefore(data, i, from)
		if i <= from || !ok {
			return 0, false
		}
		i = h
	}
}

// arrayAround is the first element of the array whose "=(" stands before
// data[p] with nothing but what an array's body holds between (see
// arrayOpen), looked for back to data[from]: the start of the chain that
// holds data[p], if p is inside an array. With across, it is the first
// element of the first of the appends ("A+=(…)" line after line, see
// elementGap) that lead to that array.
func arrayAround(data []byte, p, from int, across bool) (piece, bool) {
	// The "=(" may stand a gap before the searched part, where the
	// search found no piece: its first element may not.
	floor := max(0, from-maxGap-2)
	i, ok := arrayOpen(data, p, floor)
	if !ok {
		return piece{}, false
	}
	for across {
		c, ok := appendStartBefore(data, i)
		if !ok || c <= from {
			break
		}
		j, ok := arrayOpen(data, c, floor)
		if !ok {
			break
		}
		i = j
	}
	q, ok := nextPiece(data, i, i+maxGap)
	return q, ok && q.array && q.start >= from
}

// elementBefore says whether an element of an array that the chain to
// data[a] may have come through stands before data[a]: past one quote,
// an append's start and the gap between elements (see gapBefore), a
// short unquoted segment set off by spaces, line breaks or "(", or any
// segment or quote when a comment or an append's start stands between.
// Walking back from a piece finds only pieces known wherever they stand,
// not such an element, nor a piece beyond a long comment.
func elementBefore(data []byte, a int) bool {
	j := a
	if j > 0 && (data[j-1] == '"' || data[j-1] == '\'') {
		j--
	}
	c, joint := appendStartBefore(data, j)
	if joint {
		j = c
	}
	k := gapBefore(data, j, max(0, j-maxGap-maxComments*maxComment))
	if k == 0 || (k == j && !joint) {
		return false
	}
	if data[k-1] == '"' || data[k-1] == '\'' {
		return joint || commentBetween(data, k, j)
	}
	if !isB64[data[k-1]] {
		return false
	}
	if joint || commentBetween(data, k, j) {
		return true
	}
	i := k - 1
	for i > 0 && k-i < minPiece && isB64[data[i-1]] {
		i--
	}
	return k-i < minPiece && (i == 0 || isSpace(data[i-1]) || data[i-1] == '(')
}

// commentBetween says whether a "#" stands in data[k:j], a gap.
func commentBetween(data []byte, k, j int) bool {
	return bytes.IndexByte(data[k:j], '#') >= 0
}

// arrayChainStart is the first piece of q's chain (see chainStart), from
// before the first element of an array when the chain goes back through
// elements known only by the one before them, comments or appends:
// walking back finds only pieces known wherever they stand. The array's
// "=(" is looked for no further back than done, the searched part, and
// the chain then walked forward from there.
func arrayChainStart(data []byte, q piece, done, from int) piece {
	start := chainStart(data, q, max(done, from))
	if !elementBefore(data, start.start) {
		return start
	}
	first, ok := arrayAround(data, start.start, done, true)
	if !ok || first.start >= start.start {
		return start
	}
	return chainStart(data, start, done)
}

// closedAfter says whether ")" stands at data[i], past spaces and line
// breaks.
func closedAfter(data []byte, i int) bool {
	for start := i; i < len(data) && i-start <= maxGap && isSpace(data[i]); {
		i++
	}
	return i < len(data) && data[i] == ')'
}
