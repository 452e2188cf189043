package scanner

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// hexLines is b in hex, lines of n digits, as xxd -p writes it.
func hexLines(b []byte, n int, upper bool) string {
	h := hex.EncodeToString(b)
	if upper {
		h = strings.ToUpper(h)
	}
	var sb strings.Builder
	for len(h) > n {
		sb.WriteString(h[:n] + "\n")
		h = h[n:]
	}
	sb.WriteString(h + "\n")
	return sb.String()
}

// escapeLines is b written as printf lines appending to out, each of
// per bytes, every byte as the escape esc makes.
func escapeLines(b []byte, per int, cmd, out string, esc func(byte) string) string {
	var sb strings.Builder
	for len(b) > 0 {
		k := min(per, len(b))
		sb.WriteString(cmd + " '")
		for _, c := range b[:k] {
			sb.WriteString(esc(c))
		}
		sb.WriteString("' >> " + out + "\n")
		b = b[k:]
	}
	return sb.String()
}

// pyRepr is b as Python's repr writes a bytes literal.
func pyRepr(b []byte) string {
	var sb strings.Builder
	sb.WriteString("b'")
	for _, c := range b {
		switch {
		case c == '\\' || c == '\'':
			sb.WriteString("\\" + string(c))
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, c)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteString("'")
	return sb.String()
}

// runScript runs script with shell in dir, where it writes its payload
// to the file k, and returns that file.
func runScript(t *testing.T, shell, script string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shell, "run")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", shell, err, out)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "k"))
	return b
}

// A program written in hex or as a string's byte escapes, which the
// host's xxd -r -p, perl's pack, printf, echo -e and Python turn back
// into it, is read as they read it: each case checked against the tool.
func TestHexAndEscapedPayloadsRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	hexEsc := func(c byte) string { return fmt.Sprintf(`\x%02x`, c) }
	octEsc := func(c byte) string { return fmt.Sprintf(`\%03o`, c) }
	echoEsc := func(c byte) string { return fmt.Sprintf(`\0%03o`, c) }
	cases := []struct {
		name, shell, script, prefix string
	}{
		{"xxd -p in a here-document", "bash",
			"xxd -r -p > k <<'EOF'\n" + hexLines(miner, 60, false) + "EOF\n", "hex@"},
		{"upper-case hex on one line, perl's pack", "bash",
			"perl -e 'print pack(\"H*\", \"" + hexLines(miner, 1<<30, true)[:2*len(miner)] + "\")' > k\n", "hex@"},
		{"hex with a space between bytes", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedHex(miner, " ", 16) + "EOF\n", "xxd -r -p@"},
		{"hex with a colon between bytes", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedHex(miner, ":", 32) + "EOF\n", "xxd -r -p@"},
		{"a space between every digit", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedDigits(miner, " ", 3, 40) + "EOF\n", "xxd -r -p@"},
		{"groups of three digits, two tabs apart", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedDigits(miner, "\t\t", 3, 20) + "EOF\n", "xxd -r -p@"},
		{"pairs 17 spaces apart", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedHex(miner, strings.Repeat(" ", 17), 16) + "EOF\n", "xxd -r -p@"},
		{"lines of hex with a junk tail", "bash",
			"xxd -r -p > k <<'EOF'\n" + strings.ReplaceAll(hexLines(miner, 60, false), "\n", " ## zz\n") + "EOF\n", "xxd -r -p@"},
		{"xxd -i's C array body", "bash",
			"xxd -r -p > k <<'EOF'\n" + cArray(miner) + "EOF\n", "xxd -r -p@"},
		{"echo of hex with a space between bytes, one line, piped to xxd -r -p", "bash",
			"echo '" + strings.TrimSuffix(spacedHex(miner, " ", 1<<30), "\n") + "' | xxd -r -p > k\n", "xxd -r -p@"},
		{"bytes.fromhex of hex with a space between bytes, one line", "python3",
			"import os\nopen('k', 'wb').write(bytes.fromhex('" + strings.TrimSuffix(spacedHex(miner, " ", 1<<30), "\n") + "'))\n", "xxd -r -p@"},
		{"a digit every 32 characters", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedDigits(miner, strings.Repeat(" ", 31), 1, 40) + "EOF\n", "xxd -r -p@"},
		{"lines of 8 digits, each with a tail of 3 semicolons and 100 dashes", "bash",
			"xxd -r -p > k <<'EOF'\n" + strings.ReplaceAll(hexLines(miner, 8, false), "\n", ";;;"+strings.Repeat("-", 100)+"\n") + "EOF\n", "xxd -r -p@"},
		{"xxd -p's lines, a line of 80 # after each", "bash",
			"xxd -r -p > k <<'EOF'\n" + strings.ReplaceAll(hexLines(miner, 60, false), "\n", "\n"+strings.Repeat("#", 80)+"\n") + "EOF\n", "xxd -r -p@"},
		{"xxd -p's lines, one of them starting with a stray letter", "bash",
			"xxd -r -p > k <<'EOF'\n" + strayLetter(hexLines(miner, 60, false)) + "EOF\n", "xxd -r -p@"},
		{"echo of spaced hex with '' in the middle", "bash",
			"echo '" + spacedHalves(miner, "''") + "' | xxd -r -p > k\n", "xxd -r -p@"},
		{"echo of spaced hex with an escaped quote in the middle", "bash",
			"echo '" + spacedHalves(miner, `'\''`) + "' | xxd -r -p > k\n", "xxd -r -p@"},
		{"echo of the first byte and the rest as two arguments", "bash",
			"echo '7f' '" + strings.TrimSuffix(spacedHex(miner[1:], " ", 1<<30), "\n") + "' | xxd -r -p > k\n", "xxd -r -p@"},
		{"bytes.fromhex of two adjacent literals", "python3",
			"open('k', 'wb').write(bytes.fromhex('" + spacedHalves(miner, "' '") + "'))\n", "xxd -r -p@"},
		{"spaced hex for 64 bytes, then xxd -p's lines", "bash",
			"xxd -r -p > k <<'EOF'\n" + spacedHex(miner[:64], " ", 16) + hexLines(miner[64:], 60, false) + "EOF\n", "xxd -r -p@"},
		{"xxd -p's lines, each followed by a comment of words", "bash",
			"xxd -r -p > k <<'EOF'\n" + strings.ReplaceAll(hexLines(miner, 60, false), "\n", "\n# this line explains the following block of bytes ok\n") + "EOF\n", "xxd -r -p@"},
		{"a letter after every byte", "bash",
			"xxd -r -p > k <<'EOF'\n" + strings.ReplaceAll(spacedHex(miner, "z", 30), "\n", "z\n") + "EOF\n", "xxd -r -p@"},
		{"printf of \\x escapes, 64 bytes a line", "bash",
			escapeLines(miner, 64, "printf", "k", hexEsc), "escapes@"},
		{"printf of octal escapes, 100 bytes a line, dash", "dash",
			escapeLines(miner, 100, "printf", "k", octEsc), "escapes@"},
		{"echo -ne of \\0NNN escapes", "bash",
			escapeLines(miner, 50, "echo -ne", "k", echoEsc), "escapes+echo@"},
		{"printf of \\\\x escapes in a shell's double quotes", "bash",
			strings.ReplaceAll(strings.ReplaceAll(escapeLines(miner, 64, "printf", "k", func(c byte) string { return fmt.Sprintf(`\\x%02x`, c) }), "printf '", `printf "`), "' >>", `" >>`), "escapes@"},
		{"a bytes literal as Python's repr writes it", "python3",
			"open('k', 'wb').write(" + pyRepr(miner) + ")\n", "escapes@"},
	}
	for _, c := range cases {
		if _, err := exec.LookPath(c.shell); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := runScript(t, c.shell, c.script); !bytes.Equal(got, miner) {
			t.Fatalf("%s: the host's tools write %d bytes, not the miner", c.name, len(got))
		}
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.script)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!"+c.prefix) {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!%s…", c.name, res.Findings, c.prefix)
		}
	}
}

// A hex dump and an escaped program over one window are read from the
// file's spool, as a whole.
func TestHexAndEscapedPayloadsPastOneWindow(t *testing.T) {
	limits, scale := windowSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := samples.XMRig()
	pad := bytes.Repeat([]byte("# a comment line of a long script, for padding\n"), (17<<20)/48/scale)
	big := append(bytes.Clone(miner), bytes.Repeat([]byte{0}, (9<<20)/scale)...) // over a window as hex
	for _, c := range []struct {
		name   string
		data   []byte
		prefix string
	}{
		{"a dump behind 17 MiB of comments", append(bytes.Clone(pad), "xxd -r -p > k <<'EOF'\n"+hexLines(miner, 60, false)+"EOF\n"...), "hex@"},
		{"a dump longer than a window", []byte("xxd -r -p > k <<'EOF'\n" + hexLines(big, 60, false) + "EOF\n"), "xxd -r -p@"},
		{"a dump longer than a window, one line starting with a stray letter", []byte("xxd -r -p > k <<'EOF'\n" + strayLetter(hexLines(big, 60, false)) + "EOF\n"), "xxd -r -p@"},
		{"hex with a space between bytes behind 17 MiB of lines of #", append(bytes.Repeat([]byte(strings.Repeat("#", 69)+"\n"), (17<<20)/70/scale), "xxd -r -p > k <<'EOF'\n"+spacedHex(miner, " ", 16)+"EOF\n"...), "xxd -r -p@"},
		{"hex with a space between bytes, longer than a window", []byte("xxd -r -p > k <<'EOF'\n" + spacedHex(big, " ", 16) + "EOF\n"), "xxd -r -p@"},
		{"echo of spaced hex with '''' in the middle, longer than a window", []byte("echo '" + spacedHalves(miner, "''''") + " " + strings.TrimSuffix(spacedHex(big[len(miner):], " ", 1<<30), "\n") + "' | xxd -r -p > k\n"), "xxd -r -p@"},
		{"escapes behind 17 MiB of comments", append(bytes.Clone(pad), escapeLines(miner, 64, "printf", "k", func(c byte) string { return fmt.Sprintf(`\x%02x`, c) })...), "escapes@"},
	} {
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: c.data})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!"+c.prefix) {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!%s…", c.name, res.Findings, c.prefix)
		}
	}
}

// Text with escapes that is no program costs nothing more and is no
// finding: a source file's strings, an encoding table.
func TestEscapedTextNotRefused(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	var table strings.Builder
	table.WriteString("decoding_table = (\n")
	for i := range 256 {
		fmt.Fprintf(&table, "    '\\x%02x'     #  0x%02X -> CONTROL CHARACTER\n", i, i)
	}
	table.WriteString(")\n")
	res, err := scanOne(t, s, tfile{name: "usr/lib/python3/encodings/cp.py", mode: 0o644, data: []byte(table.String())})
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Blocking(); len(b) > 0 {
		t.Errorf("an encoding table refused: %v", b)
	}
}

// spacedHex is b in hex, sep between bytes, per bytes a line.
func spacedHex(b []byte, sep string, per int) string {
	var sb strings.Builder
	for i, c := range b {
		fmt.Fprintf(&sb, "%02x", c)
		if (i+1)%per == 0 || i == len(b)-1 {
			sb.WriteString("\n")
		} else {
			sb.WriteString(sep)
		}
	}
	return sb.String()
}

// cArray is b as xxd -i writes it from its standard input, twelve bytes
// a line.
func cArray(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i%12 == 0 {
			sb.WriteString("  ")
		}
		fmt.Fprintf(&sb, "0x%02x", c)
		if i < len(b)-1 {
			sb.WriteString(", ")
		}
		if i%12 == 11 || i == len(b)-1 {
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

// decodeHexPairs writes what xxd -r -p writes, over random text of hex
// digits, white space and the characters put between bytes.
func TestXxdReaderAsXxd(t *testing.T) {
	alphabet := []byte("0123456789abcdefABCDEF0x:,- \n\t#")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		b := make([]byte, rng.IntN(120))
		for k := range b {
			b[k] = alphabet[rng.IntN(len(alphabet))]
		}
		cmd := exec.Command("xxd", "-r", "-p")
		cmd.Stdin = bytes.NewReader(b)
		want, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeHexPairs(nil, b, 0); !bytes.Equal(got, want) {
			t.Fatalf("case %d %q: xxd -r -p writes %x, decodeHexPairs %x", i, b, want, got)
		}
	}
}

// spacedDigits is b in hex, sep after every n digits, a line break after
// every per groups.
func spacedDigits(b []byte, sep string, n, per int) string {
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += n {
		sb.WriteString(h[i:min(i+n, len(h))])
		if (i/n+1)%per == 0 {
			sb.WriteString("\n")
		} else {
			sb.WriteString(sep)
		}
	}
	sb.WriteString("\n")
	return sb.String()
}

// TestHexPairsNeedHexLetters: text of decimal numbers, one a line (Perl's
// unicore tables in a here-document), is what xxd -r -p reads, and no
// program: it is not taken for hex. A program's hex behind 64 KiB of
// zeros' hex, in the same run, still is.
func TestHexPairsNeedHexLetters(t *testing.T) {
	var table strings.Builder
	table.WriteString("return <<'END';\nV860\n")
	for i := range 4000 {
		fmt.Fprintf(&table, "%d\n", i*37%100000)
	}
	table.WriteString("END\n")
	if p := appendHexPairRuns(nil, []byte(table.String())); len(p) > 0 {
		t.Errorf("a table of decimal numbers read as hex: %d runs", len(p))
	}

	miner := samples.XMRig()
	body := spacedHex(append(make([]byte, 32<<10), miner...), " ", 16)
	script := []byte("xxd -r -p > k <<'EOF'\n" + body + "EOF\n")
	p := appendHexPairRuns(nil, script)
	if len(p) != 2 || p[0].to-p[0].from < len(body)-64 {
		t.Fatalf("%d runs, the first %d bytes long; want the whole body of %d bytes at both alignments", len(p), p[0].to-p[0].from, len(body))
	}
	if got := decodeHexPairs(nil, p[0].text, p[0].skip); !bytes.Contains(got, miner) {
		t.Error("the run does not decode to the program")
	}
}

// TestHexPairsRunStart: a run of hex pairs is decoded from its first
// byte, whatever stands before it: lines of other text (which end a
// window 64 characters before the run, or less), the command whose
// quoted argument it is, a string of hex digits before that command, at
// every alignment to the 2 KiB probes.
func TestHexPairsRunStart(t *testing.T) {
	miner := samples.XMRig()
	dump := spacedHex(miner, " ", 16)
	line := strings.TrimSuffix(spacedHex(miner, " ", 1<<30), "\n")
	for n := range 160 {
		for _, c := range []struct{ name, text string }{
			{"lines of #", strings.Repeat(strings.Repeat("#", 69)+"\n", 40) + strings.Repeat("#", n) + "\n" + dump},
			{"echo", strings.Repeat("#", n) + "\necho '" + line + "' | xxd -r -p > k\n"},
			{"bytes.fromhex", "x = '" + strings.Repeat("z", n) + "'; open('k', 'wb').write(bytes.fromhex(\"" + line + "\"))\n"},
			{"two strings", "echo '7f' '" + line[3:] + "' | xxd -r -p > k\n"},
			{"a string of hex before", "x = '" + strings.Repeat("a1", 20*n) + "'; open('k', 'wb').write(bytes.fromhex(\"" + line + "\"))\n"},
		} {
			ps := appendHexPairRuns(nil, []byte(c.text))
			found := false
			for _, p := range ps {
				found = found || bytes.HasPrefix(p.decodeInto(nil), miner)
			}
			if !found {
				t.Fatalf("%s, %d: no run of %d decodes to the program", c.name, n, len(ps))
			}
		}
	}
}

// strayLetter is lines with a z before the middle one, which xxd -r -p
// passes over.
func strayLetter(lines string) string {
	i := strings.IndexByte(lines[len(lines)/2:], '\n') + len(lines)/2 + 1
	return lines[:i] + "z" + lines[i:]
}

// spacedHalves is b as hex with a space between bytes, on one line, with
// mid between its two halves.
func spacedHalves(b []byte, mid string) string {
	return strings.TrimSuffix(spacedHex(b[:len(b)/2], " ", 1<<30), "\n") + " " + mid + strings.TrimSuffix(spacedHex(b[len(b)/2:], " ", 1<<30), "\n")
}

// hexPairsRun reads a run of hex pairs as decodeHexPairs decodes the
// same text when its windows take in all of it: hex of any payload with
// a separator between bytes, then a line of words. Hostile input ends,
// within what it was given, and never panics.
func FuzzHexPairsRun(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(0), []byte("7f 45 4c zz 00"))
	f.Add(bytes.Repeat([]byte{0x7f, 0x45, 0x4c, 0x46}, 3000), uint8(1), []byte("\n\n\n# a b c d e f g"))
	f.Add([]byte{}, uint8(2), bytes.Repeat([]byte("'7f' '45'\n"), 2000))
	f.Fuzz(func(t *testing.T, payload []byte, form uint8, hostile []byte) {
		seps := []string{" ", ":", "\n", ", 0x", "\t"}
		text := spacedHex(payload, seps[int(form)%len(seps)], 16) + "that was all of it, the end\n"
		want := decodeHexPairs(nil, []byte(text), 0)
		run := newHexPairsRun(bufio.NewReader(strings.NewReader(text)), 0, false)
		got, err := io.ReadAll(run)
		if err != nil || run.taken() > int64(len(text)) {
			t.Fatalf("err %v, taken %d of %d", err, run.taken(), len(text))
		}
		if !bytes.HasPrefix(want, got) || len(payload) >= 64 && !bytes.HasPrefix(got, payload) {
			t.Fatalf("the run reads %d bytes, % x…, not what xxd -r -p writes of %d", len(got), got[:min(len(got), 16)], len(payload))
		}
		run = newHexPairsRun(bufio.NewReader(bytes.NewReader(hostile)), int(form%2), form&2 != 0)
		got, err = io.ReadAll(run)
		if err != nil || run.taken() > int64(len(hostile)) || len(got) > len(hostile)/2+1 {
			t.Fatalf("hostile input: err %v, taken %d of %d, %d bytes out", err, run.taken(), len(hostile), len(got))
		}
	})
}
