package scanner

// Names and string prefixes between pieces. A variable's name is a
// stretch of the base64 alphabet ("encodedPayloadData") that stands
// between the pieces of a payload appended to it; taken for a piece, it
// would be put into the run and shift the payload against base64's
// groups of four. A name is known by what stands around it, not by its
// length.

// maxName is the longest name assigned with "=" glued to it and a value
// after (NAME="…", NAME+=…) that is taken for a name: a line of a block
// wrapped at 64 or 76 characters, ending in "=" and followed by a quote,
// is longer, and stays a piece.
const maxName = 48

// isName says whether the segment data[a:b] names a variable: one read
// ($NAME, ${NAME}, ${NAME[@]}) or one assigned (NAME=…, NAME+=…,
// NAME += …, NAME = …), whatever its length. A name assigned with "="
// glued to it is one only where a value follows on the same line (an
// empty assignment "NAME=" at a line's end is shaped as a block's last
// line, and stays a piece: see appendChain for why that does no harm).
func isName(data []byte, a, b int) bool {
	if a > 0 && data[a-1] == '$' || a > 1 && data[a-1] == '{' && data[a-2] == '$' {
		return true
	}
	body := bodyEnd(data, a, b)
	switch {
	case body == a:
		return false
	case body == b:
		return spacedAssignment(data, b) && nameShaped(data, a, b)
	case b-body == 1:
		n := body
		if data[n-1] == '+' {
			n--
		}
		return n-a <= maxName && b < len(data) && opensAssigned(data[b]) &&
			(a == 0 || nameLead[data[a-1]]) && nameShaped(data, a, n)
	}
	return false
}

// spacedAssignment says whether " = " or " += " (not "==") follows
// data[:b], with at least one space before it.
func spacedAssignment(data []byte, b int) bool {
	i := b
	for i < len(data) && (data[i] == ' ' || data[i] == '\t') {
		i++
	}
	if i == b || i >= len(data) {
		return false
	}
	if data[i] == '+' {
		i++
	}
	return i < len(data) && data[i] == '=' && (i+1 == len(data) || data[i+1] != '=')
}

// nameShaped says whether data[a:n] can be a variable's name: letters and
// digits, not starting with a digit unless after "_".
func nameShaped(data []byte, a, n int) bool {
	if n <= a || data[a] >= '0' && data[a] <= '9' && (a == 0 || data[a-1] != '_') {
		return false
	}
	for _, c := range data[a:n] {
		if c == '+' || c == '/' || c == '=' {
			return false
		}
	}
	return true
}

// nameLead marks the bytes a name being assigned stands after: a line's
// start or indent, a space, ";", "(", "{", "&", "|", ",", "." and the "_"
// of a name's own start.
var nameLead = func() (t [256]bool) {
	for _, c := range []byte(" \t\n\r;({&|,._") {
		t[c] = true
	}
	return t
}()

// opensAssigned says whether c, right after "NAME=", opens the value
// assigned: a quote, "$", "(", "`" or the value itself.
func opensAssigned(c byte) bool {
	return c == '"' || c == '\'' || c == '$' || c == '(' || c == '`' || isB64[c] && c != '='
}

// stringPrefix says whether the segment data[a:b] is a string's prefix
// glued to its opening quote (Python's b"…", r'…', rb"…", f"…", u"…"): it
// is neither a piece nor a word between two.
func stringPrefix(data []byte, a, b int) bool {
	if b-a > 2 || b >= len(data) || data[b] != '"' && data[b] != '\'' ||
		a > 0 && (data[a-1] == '"' || data[a-1] == '\'') {
		return false
	}
	for _, c := range data[a:b] {
		switch c {
		case 'b', 'B', 'r', 'R', 'u', 'U', 'f', 'F':
		default:
			return false
		}
	}
	return true
}
