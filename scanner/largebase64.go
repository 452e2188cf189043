package scanner

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
)

// Base64 runs longer than a window in a large file (see payloadsIn),
// decoded from its spool as they stream.

// longRun decodes the base64 chain at from in the spool, longer than a
// window, as base64 -d reads a makeself installer made with --base64, a
// here-document of it (its tabs) or a block after a marker line: to its
// first byte that is no base64, no white space, no quote and no \n-style
// escape (pieces joined in quotes, one a line, are read; see base64Run),
// at each of base64's four alignments, as a payload's runs are; a run
// of hex or hex pairs at both of its alignments (hexPairsRun, which
// takes a quoted run's quotes out), escapes as printf and as echo -e
// read them. It returns how many of the spool's bytes the run took. What
// does not decode to its end is scanned as far as it does.
func (c *spoolChunks) longRun(it item, from int64, enc encoding, quoted bool) (int64, error) {
	var n int64
	ways := 4 // base64's alignments
	switch enc {
	case encHex, encHexPairs:
		ways = 2
	case encEscaped, encEscapedEcho:
		ways = 2 // \0NNN read as printf and as echo -e read it
	}
	for way := range ways {
		br := bufio.NewReaderSize(io.NewSectionReader(c.sp, from, c.size-from), 64<<10)
		var run interface {
			io.Reader
			taken() int64
		}
		name := fmt.Sprintf("%s@%d", enc.prefix(), it.base+from)
		switch enc {
		case encEscaped, encEscapedEcho:
			run = newEscapedRun(br, way == 1)
			name = fmt.Sprintf("%s@%d", encoding(encEscaped+encoding(way)).prefix(), it.base+from)
		case encHexPairs:
			run = newHexPairsRun(br, way, quoted)
			if way > 0 {
				name += fmt.Sprintf("+%d", way)
			}
		default:
			run = &base64Run{r: br, skip: way, hex: enc == encHex}
			if way > 0 {
				name += fmt.Sprintf("+%d", way)
			}
		}
		child := it.member(name, false)
		r := &unarchiveReader{r: run, w: c.w, what: enc.prefix() + " payload " + child.where}
		_, err := c.w.scanFile(child, r, -1)
		if err == nil {
			err = c.sp.failed()
		}
		if err != nil && !c.w.hardError(err) {
			err = c.w.settle(child, quietError{err})
		}
		if err != nil {
			return run.taken(), err
		}
		n = run.taken()
	}
	return n, nil
}

// runStart is where the bytes that end chunk stop being what base64Run
// reads: the start of a run longer than a window, which a probe's chain
// may start before (a word and a quote before a JSON value's run).
func runStart(chunk []byte) int {
	i := len(chunk)
	for i > 0 {
		c := chunk[i-1]
		escape := c == '\\' && i < len(chunk) && (chunk[i] == 'n' || chunk[i] == 'r' || chunk[i] == 't')
		if !escape && !isB64[c] && !runSpace(c) {
			break
		}
		i--
	}
	return i
}

// runSpace says whether base64Run passes over c.
func runSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '"' || c == '\''
}

// base64Run decodes base64 text from r, leaving out its first skip
// letters: white space, quotes and the escapes \n, \r and \t are passed
// over, padding ends a group and the text goes on after it (GNU base64 -d
// reads separately padded lines so), and the first other byte ends it. n
// counts the bytes it read.
type base64Run struct {
	filled
	r    *bufio.Reader
	skip int
	hex  bool // hex digits, two a byte, in place of base64's groups
	n    int64
	q    [4]byte
	nq   int
	buf  []byte
}

// taken is how many bytes of its reader the run took.
func (b *base64Run) taken() int64 { return b.n }

func (b *base64Run) Read(p []byte) (int, error) { return b.read(p, b.fill) }

// filled is what a run decoded and not yet read, and whether it ended:
// a reader whose fill decodes the next piece into out.
type filled struct {
	out  []byte
	done bool
}

// read copies out to p, filling it while it is empty and not done.
func (f *filled) read(p []byte, fill func()) (int, error) {
	for len(f.out) == 0 && !f.done {
		fill()
	}
	if len(f.out) == 0 {
		return 0, io.EOF
	}
	k := copy(p, f.out)
	f.out = f.out[k:]
	return k, nil
}

// fill decodes the next few KiB into b.out.
func (b *base64Run) fill() {
	out := b.buf[:0]
	for len(out) < 3<<10 && !b.done {
		c, err := b.r.ReadByte()
		if err != nil {
			b.done = true
			break
		}
		b.n++
		switch {
		case b.hex && !isHexDigit(c) && !runSpace(c) && c != '\\':
			b.done = true
		case b.hex && isHexDigit(c):
			if b.skip > 0 {
				b.skip--
				continue
			}
			b.q[b.nq] = c
			if b.nq++; b.nq == 2 {
				out = append(out, hexValue(b.q[0])<<4|hexValue(b.q[1]))
				b.nq = 0
			}
		case c == '=':
			out = b.group(out)
		case isB64[c]:
			if b.skip > 0 {
				b.skip--
				continue
			}
			b.q[b.nq] = c
			if b.nq++; b.nq == 4 {
				out = b.group(out)
			}
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
	if b.done && !b.hex {
		out = b.group(out)
	}
	b.buf, b.out = out, out
}

// group decodes the letters gathered so far, a whole group or one ended
// by padding.
func (b *base64Run) group(out []byte) []byte {
	if b.nq < 2 {
		b.nq = 0
		return out
	}
	q := b.q
	for k := b.nq; k < 4; k++ {
		q[k] = '='
	}
	var d [3]byte
	n, _ := base64.StdEncoding.Decode(d[:], q[:])
	b.nq = 0
	return append(out, d[:n]...)
}
