package scanner

import (
	"bufio"
	"fmt"
	"io"
)

// Base64 runs longer than a window in a large file (see payloadsIn),
// decoded from its spool as they stream.

// longRun decodes the base64 chain at from in the spool, longer than a
// window, as base64 -d reads a makeself installer made with --base64, a
// here-document of it (its tabs) or a block after a marker line: to its
// first byte that is no base64, no white space, no quote and no \n-style
// escape (pieces joined in quotes, one a line, are read; see basencRun),
// at each of base64's four alignments, as a payload's runs are; a run
// in another of basenc's encodings or in hex the same way, at each of
// its alignments; a run of hex pairs at both of its alignments
// (hexPairsRun, which takes a quoted run's quotes out); escapes as printf
// and as echo -e read them. It returns how many of the spool's bytes the run took. What
// does not decode to its end is scanned as far as it does.
func (c *spoolChunks) longRun(it item, from int64, enc encoding, quoted bool) (int64, error) {
	var n int64
	var ways int
	switch enc {
	case encHexPairs:
		ways = 2
	case encEscaped, encEscapedEcho:
		ways = 2 // \0NNN read as printf and as echo -e read it
	case encAscii85, encBase85, encZ85:
		ways = 5
	case encXxdDump:
		ways = len(xxdReadings)
	default:
		ways = basencs[enc].group // one a letter of a group
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
		case encAscii85, encBase85, encZ85:
			run = newBase85Run(br, base85s[enc], way)
			if way > 0 {
				name += fmt.Sprintf("+%d", way)
			}
		case encXxdDump:
			run, name = newXxdDumpRun(br, way, name)
		default:
			run = newBasencRun(br, basencs[enc], way)
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

// runStart is where the bytes that end chunk stop being what basencRun
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

// runSpace says whether basencRun passes over c.
func runSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '"' || c == '\''
}

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
