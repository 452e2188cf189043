package scanner

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// xxdOf is what the host's xxd, run with args, writes of data.
func xxdOf(t testing.TB, data []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("xxd", args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xxd %v: %v", args, err)
	}
	return string(out)
}

// shuffled is text's lines in an order of their own.
func shuffled(text string, seed uint64) string {
	lines := strings.SplitAfter(text, "\n")
	rand.New(rand.NewPCG(seed, 7)).Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	return strings.Join(lines, "")
}

// eachLine is text with each of its lines passed through f.
func eachLine(text string, f func(string) string) string {
	var sb strings.Builder
	for _, l := range strings.SplitAfter(text, "\n") {
		if l != "" {
			sb.WriteString(f(strings.TrimSuffix(l, "\n")) + "\n")
		}
	}
	return sb.String()
}

// A program written as xxd's default dump, in any of the forms xxd
// writes and a script can hand to xxd -r, is read as xxd -r reads it:
// each script is run first, and must write the program.
func TestXxdDumpsRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	junk := samples.Filler(300)
	withZeros := append(append(bytes.Clone(miner), make([]byte, 1<<20)...), miner...)
	heredoc := func(cmd, dump string) string { return cmd + " <<'EOF'\n" + dump + "EOF\n" }
	cases := []struct {
		name, script string
		want         []byte
	}{
		{"the default dump", heredoc("xxd -r > k", xxdOf(t, miner)), miner},
		{"-c 32", heredoc("xxd -r -c 32 > k", xxdOf(t, miner, "-c", "32")), miner},
		{"-c 256 -g 1", heredoc("xxd -r -c 256 > k", xxdOf(t, miner, "-c", "256", "-g", "1")), miner},
		{"-c 8", heredoc("xxd -r -c 8 > k", xxdOf(t, miner, "-c", "8")), miner},
		{"-c 1", heredoc("xxd -r > k", xxdOf(t, miner, "-c", "1")), miner},
		{"-g 1", heredoc("xxd -r > k", xxdOf(t, miner, "-g", "1")), miner},
		{"-g 4", heredoc("xxd -r > k", xxdOf(t, miner, "-g", "4")), miner},
		{"-g 8", heredoc("xxd -r > k", xxdOf(t, miner, "-g", "8")), miner},
		{"-u", heredoc("xxd -r > k", xxdOf(t, miner, "-u")), miner},
		{"lines shuffled", heredoc("xxd -r > k", shuffled(xxdOf(t, miner), 1)), miner},
		{"-s past 300 bytes, read back with -s -300", heredoc("xxd -r -s -300 > k", xxdOf(t, append(bytes.Clone(junk), miner...), "-s", "300")), miner},
		{"-o 0x10000, read back with -s -0x10000", heredoc("xxd -r -s -0x10000 > k", xxdOf(t, miner, "-o", "0x10000")), miner},
		{"-a over 1 MiB of zeros", heredoc("xxd -r > k", xxdOf(t, withZeros, "-a")), withZeros},
		{"into a pipe, lines after it going back over its header", "xxd -r <<'EOF' | cat > k\n" + xxdOf(t, miner) + xxdLine(0, make([]byte, 16)) + "EOF\n", miner},
		{"to an output file, xxd -r - k", heredoc("xxd -r - k", xxdOf(t, miner)), miner},
		{"indented with tabs in <<-", "xxd -r > k <<-'EOF'\n" + eachLine(xxdOf(t, miner), func(l string) string { return "\t\t" + l }) + "\tEOF\n", miner},
		{"no space after the colon", heredoc("xxd -r > k", eachLine(xxdOf(t, miner), func(l string) string { return strings.Replace(l, ": ", ":", 1) })), miner},
		{"CRLF lines after a marker", "sed '1,/^#DUMP$/d' \"$0\" | xxd -r > k\nexit 0\n#DUMP\n" + eachLine(xxdOf(t, miner), func(l string) string { return l + "\r" }), miner},
		{"commented lines, each after a line of words", "sed -n 's/^# //p' \"$0\" | xxd -r > k\nexit 0\n" +
			eachLine(xxdOf(t, miner), func(l string) string {
				return "# " + l + "\n## the next sixteen bytes of the program, as xxd wrote them"
			}), miner},
		{"a \\r after every character", heredoc("xxd -r > k", eachLine(xxdOf(t, miner), func(l string) string { return strings.Join(strings.Split(l, ""), "\r") })), miner},
		{"hex after each line's 16 bytes, which -c 16 passes over", heredoc("xxd -r > k", eachLine(xxdOf(t, miner), func(l string) string { return l[:49] + " deadbeefcafef00d" + l[49:] })), miner},
		{"a text column that looks like hex", heredoc("xxd -r > k", eachLine(xxdOf(t, miner), func(l string) string { return l[:51] + "deadbeefcafef00d" })), miner},
		{"-c 8, each line 8 bytes of junk after its 8, lines reversed", heredoc("xxd -r -c 8 > k", junkTails(miner, 8)), miner},
	}
	for _, c := range cases {
		if got := runScript(t, "bash", c.script); !bytes.Equal(got, c.want) {
			t.Fatalf("%s: the host's xxd -r writes %d bytes, not the %d of the program", c.name, len(got), len(c.want))
		}
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.script)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!xxd -r@") {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!xxd -r@…", c.name, res.Findings)
		}
	}
}

// A dump longer than a window is read from the file's spool, its lines in
// order or not.
func TestXxdDumpsPastOneWindow(t *testing.T) {
	limits, scale := windowSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := samples.XMRig()
	big := append(bytes.Clone(miner), make([]byte, (4<<20)/scale)...) // over a window as a dump
	dump := xxdOf(t, big)
	for _, c := range []struct{ name, script string }{
		{"in order", "xxd -r > k <<'EOF'\n" + dump + "EOF\n"},
		{"lines shuffled", "xxd -r > k <<'EOF'\n" + shuffled(dump, 2) + "EOF\n"},
	} {
		if len(c.script) <= (16<<20)/scale {
			t.Fatalf("%s: %d bytes, no longer than a window", c.name, len(c.script))
		}
		if got := runScript(t, "bash", c.script); !bytes.Equal(got, big) {
			t.Fatalf("%s: the host's xxd -r writes %d bytes, not the %d of the program", c.name, len(got), len(big))
		}
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.script)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!xxd -r@") {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!xxd -r@…", c.name, res.Findings)
		}
	}
}

// xxdLine is the line of xxd's dump at off of b, 16 bytes at most.
func xxdLine(off int64, b []byte) string { return goXxd(b, 16, 2, false, off) }

// junkTails is b in lines of n bytes at offsets n apart, each with n
// bytes of junk after them, last line first: xxd -r -c n passes over
// the junk, a reading of more bytes a line writes it over the next
// line's (outside attack round 25b, R1).
func junkTails(b []byte, n int) string {
	junk := samples.Filler(n)
	var lines []string
	for i := 0; i < len(b); i += n {
		line := bytes.Clone(b[i:min(len(b), i+n)])
		if len(line) == n { // a short last line would write its junk
			line = append(line, junk...)
		}
		lines = append(lines, xxdLine(int64(i), line))
	}
	slices.Reverse(lines)
	return strings.Join(lines, "")
}

// A dump whose offsets reach far (a line at 0xffffffff, which makes xxd
// -r write a sparse file of 4 GiB) is read within bounds: its gaps are
// written as zeros up to maxXxdSpan in all, every byte it writes is
// scanned, and past one window, a line that goes back before what the
// scanner holds of its output stops the layer with ErrLimit.
func TestXxdDumpsFarOffsets(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	dump := xxdOf(t, miner)
	far := dump + xxdLine(0xffffffff, []byte("ABCD"))

	// What the host does with it: the program, then a hole up to 4 GiB.
	dir := t.TempDir()
	in, out := filepath.Join(dir, "d"), filepath.Join(dir, "m")
	if err := os.WriteFile(in, []byte(far), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("xxd", "-r", in, out).CombinedOutput(); err != nil {
		t.Fatalf("xxd -r: %v: %s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, len(miner))
	_, err = f.ReadAt(head, 0)
	st, _ := f.Stat()
	f.Close()
	if err != nil || !bytes.Equal(head, miner) || st.Size() != 0xffffffff+4 {
		t.Fatalf("xxd -r writes %d bytes (%v), not the program and 4 GiB", st.Size(), err)
	}

	if got := decodeXxdDump(nil, []byte(far), 0); !bytes.Equal(got, append(bytes.Clone(miner), "ABCD"...)) {
		t.Errorf("a gap of 4 GiB: %d bytes, want the program and ABCD, the gap left out", len(got))
	}
	// Gaps of 15 MiB each, 200 of them: 3 GiB of zeros, cut to 16 MiB.
	var many strings.Builder
	many.WriteString(dump)
	for i := range 200 {
		many.WriteString(xxdLine(int64(i+1)*15<<20, []byte("ABCD")))
	}
	if got := decodeXxdDump(nil, []byte(many.String()), 0); len(got) > len(miner)+200*4+maxXxdSpan || !bytes.HasPrefix(got, miner) {
		t.Errorf("200 gaps of 15 MiB: %d bytes, want the program first and at most %d", len(got), len(miner)+200*4+maxXxdSpan)
	}
	for _, c := range []struct{ name, script string }{
		{"a line at 0xffffffff", "xxd -r > k <<'EOF'\n" + far + "EOF\n"},
		{"200 lines 15 MiB apart", "xxd -r > k <<'EOF'\n" + many.String() + "EOF\n"},
	} {
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.script)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!xxd -r@") {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!xxd -r@…", c.name, res.Findings)
		}
	}

	// Past one window: a line at 0, 4 MiB of lines from 15 MiB on (the
	// output held moves on past 3 MiB), then a line at 256.
	var back strings.Builder
	back.WriteString("xxd -r > k <<'EOF'\n" + xxdLine(0, miner[:16]))
	back.WriteString(xxdOf(t, samples.Filler(4<<20), "-o", fmt.Sprint(15<<20)))
	back.WriteString(xxdLine(256, miner[256:272]) + "EOF\n")
	_, err = scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(back.String())})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "xxd -r@") || !strings.Contains(err.Error(), "goes back") {
		t.Errorf("a line going back 18 MiB, past one window: %v, want ErrLimit naming the dump", err)
	}
}

// Hex in text that is no dump is not read as one, and a dump of harmless
// bytes in a document is read and refused for nothing.
func TestXxdDumpsKeptOut(t *testing.T) {
	var tables []string
	var sb strings.Builder
	for cp := 0x1000; cp < 0x1000+400*37; cp += 37 {
		fmt.Fprintf(&sb, "%04X\t%04X\tMn\n", cp, cp+20)
	}
	tables = append(tables, sb.String()) // Unicode's tables (Perl's unicore)
	sb.Reset()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		for k := range 10 {
			fmt.Fprintf(&sb, "%04X", 0x4e00+rng.IntN(0x5000))
			if k < 9 {
				sb.WriteString(" ")
			}
		}
		sb.WriteString("\n")
	}
	tables = append(tables, sb.String()) // a CJK collation list
	sb.Reset()
	for i := range 400 {
		fmt.Fprintf(&sb, "%3d %3d %3d\t\tcolour%d\n", i%256, i*7%256, i*13%256, i)
	}
	tables = append(tables, sb.String()) // rgb.txt
	sb.Reset()
	for i := range 300 {
		fmt.Fprintf(&sb, "\t\"\\x00\\x01\\x%02x\\x00`\\x00\\x00\\xc0\" + // 0x%05X 0x00300: 0x000C0\n", i%256, 0x41+i)
	}
	tables = append(tables, sb.String()) // Go's normalization tables
	for i, table := range tables {
		if p := appendXxdDumps(nil, []byte(table)); len(p) > 0 {
			t.Errorf("table %d read as a dump: %d payloads, the first at %d", i, len(p), p[0].from)
		}
	}

	// Real files of such tables, where this machine has them.
	for _, pattern := range []string{"/usr/share/perl/*/unicore/To/*.pl", "/usr/share/perl/*/Unicode/Collate/CJK/*.pm", "/usr/share/groff/*/font/devutf8/*", "/etc/X11/rgb.txt"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				continue
			}
			if p := appendXxdDumps(nil, data); len(p) > 0 {
				t.Errorf("%s read as a dump: %d payloads, the first at %d", name, len(p), p[0].from)
			}
		}
	}

	// A document with a dump of a harmless program: read, not refused.
	_, binary := samples.Benign()
	doc := "The file starts so:\n\n" + xxdOf(t, binary) + "\nIts header is ELF's.\n"
	if p := appendXxdDumps(nil, []byte(doc)); len(p) == 0 || !bytes.Equal(p[0].decodeInto(nil), binary) {
		t.Fatalf("the dump in the document: %d payloads, want one giving the program back", len(p))
	}
	s := newTestScanner(t, Options{Workers: 2})
	res, err := scanOne(t, s, tfile{name: "usr/share/doc/tool/README", mode: 0o644, data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Findings {
		if f.Severity == SeverityHigh {
			t.Errorf("a harmless dump in a document: %v", f)
		}
	}
}

// The reading of dumps is xxd -r's: random lines of offsets, hex, junk,
// white space and text columns, given to the host's xxd -r writing to a
// file, to a pipe, and with -c 256, give what decodeXxdDump gives, after
// the zeros xxd writes before the lowest offset (and, into a pipe, after
// the last byte, when a line seeks on without writing).
func TestXxdRevertAsXxd(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(s string) byte { return s[rng.IntN(len(s))] }
	dir := t.TempDir()
	in, out := filepath.Join(dir, "d"), filepath.Join(dir, "m")
	for i := range 300 {
		var sb strings.Builder
		for range rng.IntN(40) {
			for range rng.IntN(3) {
				sb.WriteByte(pick(" \t#>xz:\r"))
			}
			for range 1 + rng.IntN(5) {
				sb.WriteByte(pick("0123456789abcdefABCDEF"))
			}
			sb.WriteByte(pick(" :\tx\n")) // the offset ends: xxd's files stay small
			for range rng.IntN(60) {
				sb.WriteByte(pick("0123456789abcdef0123456789ABCDEF  ::\t.xz\r"))
			}
			sb.WriteByte('\n')
		}
		text := []byte(sb.String())
		if err := os.WriteFile(in, text, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, skip := range xxdReadings {
			cols, pipe := xxdWay(skip)
			// ulimit -f: should a case write far, it fails rather than fill the disk.
			cmd := exec.Command("sh", "-c", fmt.Sprintf("ulimit -f 16384; xxd -r -c %d %s %s", cols, in, out))
			if pipe {
				cmd = exec.Command("sh", "-c", fmt.Sprintf("ulimit -f 16384; xxd -r -c %d %s | cat > %s", cols, in, out))
			}
			os.Remove(out) // xxd -r patches a file that is there
			cmd.Run()      // into a pipe, xxd stops with an error where a line goes back
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var tally xxdTally
			x := newXxdRevert(cols, pipe, &tally)
			x.feed(text)
			x.flush()
			lo := int64(0)
			if len(tally.segs) > 0 {
				lo = tally.segs[0].off
				for _, g := range tally.segs {
					lo = min(lo, g.off)
				}
			}
			got := decodeXxdDump(nil, text, skip)
			zeros := func(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }
			ok := int64(len(want)) >= lo && zeros(want[:lo]) && bytes.HasPrefix(want[lo:], got)
			if ok && (pipe && !zeros(want[lo+int64(len(got)):]) || !pipe && int(lo)+len(got) != len(want)) {
				ok = false
			}
			if !ok {
				t.Fatalf("case %d, reading %d: %q\nxxd -r writes %d bytes % x\ndecodeXxdDump %d bytes from %d: % x", i, skip, text, len(want), want, len(got), lo, got)
			}
		}
	}
}

// goXxd is data as xxd's dump with cols bytes a line in groups of group
// bytes, in upper case when upper is set, from offset base: the dump of
// FuzzXxdDump, where running xxd at each input would be slow.
func goXxd(data []byte, cols, group int, upper bool, base int64) string {
	digits := "0123456789abcdef"
	if upper {
		digits = "0123456789ABCDEF"
	}
	var sb strings.Builder
	for i := 0; i < len(data); i += cols {
		line := data[i:min(len(data), i+cols)]
		fmt.Fprintf(&sb, "%08x: ", base+int64(i))
		width := 0
		for k := range cols {
			if k > 0 && k%group == 0 {
				sb.WriteByte(' ')
				width++
			}
			if k < len(line) {
				sb.WriteByte(digits[line[k]>>4])
				sb.WriteByte(digits[line[k]&15])
			} else {
				sb.WriteString("  ")
			}
			width += 2
		}
		sb.WriteString("  ")
		for _, c := range line {
			if c < ' ' || c > '~' {
				c = '.'
			}
			sb.WriteByte(c)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

// readXxdRun is what xxdDumpRun reads of text, up to limit bytes.
func readXxdRun(text []byte, way int, limit int64) ([]byte, int64, error) {
	run, _ := newXxdDumpRun(bufio.NewReader(bytes.NewReader(text)), way, "xxd -r@0")
	got, err := io.ReadAll(io.LimitReader(run, limit))
	return got, run.taken(), err
}

// A payload written as xxd's dump, in any width, grouping and case, its
// lines in order or not, from any offset, is read back whole, within a
// window and past one; hostile text is read within bounds and never
// panics.
func FuzzXxdDump(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(0), uint16(0), []byte("00000000: 4142 4344  ABCD\n"))
	f.Add(samples.Filler(1000), uint8(0x35), uint16(300), []byte("ffffffff: 4142\n00000000: 4344\n7fffffffffffffff: 41\n"))
	f.Add(bytes.Repeat([]byte("0123456789abcdef"), 40), uint8(0xfa), uint16(1), []byte("10\n20: 4142\n  # 30:41 42 43\r\n*\n"))
	f.Add([]byte{0, 0, 0, 1}, uint8(0x80), uint16(65535), []byte(strings.Repeat("00000000: 7f45 4c46  .ELF\n", 50)+"ffffffffffffffffff: 41\n"))
	f.Fuzz(func(t *testing.T, payload []byte, form uint8, base uint16, hostile []byte) {
		cols := []int{16, 32, 8, 1, 256, 24, 4, 12}[form&7]
		group := []int{2, 1, 4, 8}[form>>3&3]
		text := goXxd(payload, cols, group, form&0x20 != 0, int64(base))
		skip := 0
		if cols > 16 {
			skip = 256
		}
		if form&0x40 != 0 {
			text = shuffled(text, uint64(base))
		}
		if got := decodeXxdDump(nil, []byte(text), skip); !bytes.Equal(got, payload) {
			t.Fatalf("-c %d -g %d from %d: %d bytes, want the %d of the payload", cols, group, base, len(got), len(payload))
		}
		way := 0
		if skip > 0 {
			way = 2
		}
		got, taken, err := readXxdRun([]byte(text+"that was all of it, the end\n"), way, 1<<30)
		if err != nil || !bytes.Equal(got, payload) || taken != int64(len(text)) {
			t.Fatalf("-c %d -g %d from %d, read as it streams: %d bytes, %d of %d taken, %v; want the %d of the payload",
				cols, group, base, len(got), taken, len(text), err, len(payload))
		}

		way = int(form) % len(xxdReadings)
		if got := decodeXxdDump(nil, hostile, xxdReadings[way]); len(got) > len(hostile)/2+maxXxdSpan {
			t.Fatalf("hostile input of %d bytes, reading %d: %d bytes", len(hostile), xxdReadings[way], len(got))
		}
		_, taken, err = readXxdRun(hostile, way, 4<<20) // its zeros go on to a limit
		if err != nil && !errors.Is(err, ErrLimit) || taken > int64(len(hostile)) {
			t.Fatalf("hostile input, way %d: %v, %d of %d taken", way, err, taken, len(hostile))
		}
		appendXxdDumps(nil, hostile)
	})
}

// The finder over what files hold, and over a dump (which is decoded to
// be taken), against the search for every other payload: see the
// report of version 19's xxd -r dumps for the figures.
func BenchmarkXxdDumps(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	binary, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	inputs := []struct {
		name string
		data func() []byte
	}{
		{"doc", func() []byte { return joined(treeFiles(b, "/usr/share/doc", 16<<20)) }},
		{"python", func() []byte { return joined(treeFiles(b, "/usr/lib/python3", 16<<20, ".py")) }},
		{"binary", func() []byte { return binary[:min(len(binary), 16<<20)] }},
		{"makeself", func() []byte {
			return []byte(samples.Makeself(samples.Gzip(samples.Tar(append(samples.XMRigRelease(), samples.File{Path: "pad", Data: samples.Filler(64 << 10)})...))))
		}},
		{"dump", func() []byte { return []byte(xxdOf(b, samples.Filler(1<<20))) }},
	}
	for _, in := range inputs {
		data := in.data()
		b.Run(in.name+"/xxd", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				appendXxdDumps(nil, data)
			}
		})
		b.Run(in.name+"/all", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				base64Payloads(data)
			}
		})
	}
}
