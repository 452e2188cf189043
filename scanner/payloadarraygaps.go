package scanner

import "bytes"

// What bash lets stand between two elements of an array besides spaces
// and line breaks, each of which it reads as no part of any element:
//
//   - a backslash at a line's end ("p1 p2 \" and "p3 p4" on the next
//     line): bash drops the backslash and the line break, and the
//     elements join as before;
//   - a comment: "#" after a space or a line break, to the line's end
//     ("p1 p2  # part 2", or a line "# part 2" of its own);
//   - the end of one append and the start of the next
//     (") NAME+=(", with spaces, line breaks or ";" between): appends
//     of several elements each, A+=(p1 p2 p3) line after line, joined
//     by printf %s "${A[@]}" as one array.
//
// A comment or an append's start is passed only when no piece starts in
// it (see nextElement): a chain never passes over a piece known wherever
// it stands, or the probe that finds that piece and the search of every
// byte would start chains at different places.

// maxComment is the longest comment passed between two elements, and
// maxComments the most comments in one gap.
const (
	maxComment  = 160
	maxComments = 8
)

// contAt says whether a backslash and a line break start at data[i]: a
// line that goes on on the next one, which bash reads as nothing.
func contAt(data []byte, i int) bool {
	return i+1 < len(data) && data[i] == '\\' && data[i+1] == '\n'
}

// elementGap is where the gap that starts at data[j], after an element
// and its closing quote, ends: past spaces, line breaks, continued lines,
// comments and an append's start. Spaces, line breaks and the append's
// bytes are at most maxGap; each comment at most maxComment. marked says
// that a comment or an append's start was passed.
func elementGap(data []byte, j int) (end int, marked, ok bool) {
	spent, comments := 0, 0
	for j < len(data) && spent <= maxGap {
		switch c := data[j]; {
		case isSpace(c):
			j, spent = j+1, spent+1
		case contAt(data, j):
			j, spent = j+2, spent+2
		case c == '#' && j > 0 && isSpace(data[j-1]):
			n := commentLen(data, j)
			if n > maxComment || comments == maxComments {
				return j, marked, false
			}
			j, marked, comments = j+n, true, comments+1
		case c == ')':
			n := appendStartLen(data, j)
			if n == 0 || !sameArray(data, j, j+n) {
				return j, marked, true
			}
			j, spent, marked = j+n, spent+n, true
		default:
			return j, marked, true
		}
	}
	return j, marked, j < len(data) && spent <= maxGap
}

// commentLen is the length of the comment that starts at data[j], up to
// its line's end, or maxComment+1 when it is longer.
func commentLen(data []byte, j int) int {
	n := 0
	for j+n < len(data) && data[j+n] != '\n' && n <= maxComment {
		n++
	}
	return n
}

// appendStartLen is the length of ") NAME+=(" at data[j] (spaces, line
// breaks, ";" and comments between ")" and the name), or 0 when none
// starts there.
func appendStartLen(data []byte, j int) int {
	i := j + 1
	for i < len(data) && i-j <= maxGap+maxComment {
		if isSpace(data[i]) || data[i] == ';' {
			i++
		} else if data[i] == '#' && isSpace(data[i-1]) && commentLen(data, i) <= maxComment {
			i += commentLen(data, i)
		} else {
			break
		}
	}
	n := i
	for n < len(data) && n-i <= maxName && nameByte(data[n], n == i) {
		n++
	}
	if n == i || n+3 > len(data) || data[n] != '+' || data[n+1] != '=' || data[n+2] != '(' {
		return 0
	}
	return n + 3 - j
}

// sameArray says whether the array that ")" at data[j] closes and the
// append whose "(" ends just before data[k] have one name: appends to
// other arrays are printed apart ("${A[@]}", "${B[@]}").
func sameArray(data []byte, j, k int) bool {
	open, ok := arrayOpen(data, j, 0)
	if !ok {
		return false
	}
	name := arrayName(data, open)
	return len(name) > 0 && string(name) == string(arrayName(data, k))
}

// arrayName is the name assigned by "NAME=(" or "NAME+=(" that ends
// just before data[i].
func arrayName(data []byte, i int) []byte {
	n := i - 2 // the "="
	if n > 0 && data[n-1] == '+' {
		n--
	}
	a := n
	for a > 0 && n-a < maxName && nameByte(data[a-1], false) {
		a--
	}
	return data[a:n]
}

// nameByte says whether c may stand in a shell variable's name, first
// or not.
func nameByte(c byte, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// commentBefore is the start of the comment that holds data[i-1], if
// that byte is in one: the first "#" of its line that stands at the
// line's start or after a space, looked for no further back than from
// and maxComment bytes.
func commentBefore(data []byte, i, from int) (int, bool) {
	// Found a byte at a time by bytes.IndexByte: most text has no "#"
	// near, and minified code has long lines.
	ls := max(from, i-maxComment, 0)
	first := bytes.IndexByte(data[ls:i], '#')
	if first < 0 {
		return 0, false
	}
	if n := bytes.LastIndexByte(data[ls+first:i], '\n'); n >= 0 {
		ls += first + n + 1
	}
	for k := ls; k < i; k++ {
		n := bytes.IndexByte(data[k:i], '#')
		if n < 0 {
			return 0, false
		}
		k += n
		if k == 0 || isSpace(data[k-1]) {
			return k, true
		}
	}
	return 0, false
}

// gapBefore is where the gap that ends just before data[i] starts, read
// back as elementGap reads it forward: past spaces, line breaks,
// continued lines and comments (an append's start is looked for by
// appendStartBefore), no further back than from.
func gapBefore(data []byte, i, from int) int {
	for spent, comments := 0, 0; i > from && spent <= maxGap; {
		switch c := data[i-1]; {
		case c == '\n':
			i, spent = i-1, spent+1
			if h, ok := commentBefore(data, i, from); ok && comments < maxComments {
				i, comments = h, comments+1
			} else if i > from && data[i-1] == '\\' {
				i, spent = i-1, spent+1
			}
		case isSpace(c):
			i, spent = i-1, spent+1
		default:
			return i
		}
	}
	return i
}

// appendStartBefore says whether an append's start (") NAME+=(") ends
// just before data[i], and where its ")" is.
func appendStartBefore(data []byte, i int) (int, bool) {
	if i < 4 || data[i-1] != '(' || data[i-2] != '=' || data[i-3] != '+' {
		return 0, false
	}
	n := i - 3
	for n > 0 && i-n <= maxName+3 && nameByte(data[n-1], false) {
		n--
	}
	if n == i-3 {
		return 0, false
	}
	for n > 0 && i-n <= maxName+3+maxGap+maxComment && (isSpace(data[n-1]) || data[n-1] == ';') {
		n--
		if h, ok := commentBefore(data, n, 0); ok && data[n] == '\n' {
			n = h
		}
	}
	if n == 0 || data[n-1] != ')' || appendStartLen(data, n-1) != i-(n-1) {
		return 0, false
	}
	return n - 1, true
}
