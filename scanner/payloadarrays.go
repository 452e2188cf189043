package scanner

// A bash array of unquoted elements: A=(p1 p2 …), over one line or many,
// joined by printf %s "${A[@]}". An element shorter than minPiece after
// a space stands as words do ("echo ABCD"), so it is a piece only by
// where it stands: the first element is one because "=(" opens its
// array (see arrayElementStart), and each element after it because the
// element before it is one, with nothing but spaces, line breaks and
// quotes between (see nextElement). The chain ends with the array (at
// ")" or whatever else stands there) unless the array is its first
// element alone ('N+=("…")', appended to one by one), which goes on as
// any piece does: a piece after the array can be known for the next in
// its chain only from a piece known wherever it stands. An element is thus known only
// from its array's start: the probe that lands inside an array looks
// back for its "=(" (see arrayAround).

// arrayElementStart says whether the segment data[a:b] is the first
// element of an array: "=(" and spaces or line breaks stand before it
// (within maxGap), and it ends where an element does.
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
	for i > 0 && a-i <= maxGap && isSpace(data[i-1]) {
		i--
	}
	return i >= 2 && data[i-1] == '(' && data[i-2] == '='
}

// endsElement says whether an unquoted element may end before data[b]:
// at a space, a line break, ")" or the data's end.
func endsElement(data []byte, b int) bool {
	return b >= len(data) || isSpace(data[b]) || data[b] == ')'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// nextElement is the element after p, an element of an array, in its
// chain: the next segment after p's closing quote, if it has one, and
// spaces or line breaks (within maxGap), unquoted or in quotes.
func nextElement(data []byte, p piece) (piece, bool) {
	j := p.end
	if j < len(data) && (data[j] == '"' || data[j] == '\'') {
		j++
	}
	limit := j + maxGap
	for j < len(data) && j <= limit && isSpace(data[j]) {
		j++
	}
	if j >= len(data) || j > limit {
		return piece{}, false
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
// elements: the base64 alphabet, spaces, line breaks and quotes.
var arrayBody = func() (t [256]bool) {
	t = isB64
	for _, c := range []byte(" \t\n\r\"'") {
		t[c] = true
	}
	return t
}()

// arrayAround is the first element of the array whose "=(" stands before
// data[p] with nothing but what an array's body holds between, looked
// for back to data[from]: the start of the chain that holds data[p], if
// p is inside an array.
func arrayAround(data []byte, p, from int) (piece, bool) {
	i := p
	for i > from && arrayBody[data[i-1]] {
		i--
	}
	if i < 2 || data[i-1] != '(' || data[i-2] != '=' {
		return piece{}, false
	}
	q, ok := nextPiece(data, i, i+maxGap)
	return q, ok && q.array
}

// elementBefore says whether a short unquoted segment set off by spaces
// or line breaks stands before data[a], past spaces, line breaks and one
// quote: an element of an array that only the one before it makes a
// piece may be the piece before data[a] in its chain.
func elementBefore(data []byte, a int) bool {
	j := a
	if j > 0 && (data[j-1] == '"' || data[j-1] == '\'') {
		j--
	}
	k := j
	for k > 0 && j-k <= maxGap && isSpace(data[k-1]) {
		k--
	}
	if k == j || k == 0 || !isB64[data[k-1]] {
		return false
	}
	i := k - 1
	for i > 0 && k-i < minPiece && isB64[data[i-1]] {
		i--
	}
	return k-i < minPiece && (i == 0 || isSpace(data[i-1]) || data[i-1] == '(')
}

// arrayChainStart is the first piece of q's chain (see chainStart), from
// the first element of an array when the chain goes back through
// elements known only by the one before them: walking back finds only
// pieces known wherever they stand. The array's "=(" is looked for no
// further back than done, the searched part.
func arrayChainStart(data []byte, q piece, done, from int) piece {
	start := chainStart(data, q, max(done, from))
	if !elementBefore(data, start.start) {
		return start
	}
	first, ok := arrayAround(data, start.start, done)
	if !ok {
		return start
	}
	for x := first; x.start <= start.start; {
		if x.start == start.start {
			return chainStart(data, first, done)
		}
		if x, ok = nextInChain(data, x); !ok {
			break
		}
	}
	return start
}
