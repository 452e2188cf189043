package scanner

import (
	"bufio"
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// windowSizes is the limits the tests of runs past one window scan with,
// and how much smaller than for the default window of 16 MiB their runs
// are made: under the race detector the smallest window (the same paths,
// at a cost the race detector can afford).
func windowSizes() (Limits, int) {
	if raceEnabled || testing.Short() {
		return Limits{Window: minWindow}, (16 << 20) / minWindow
	}
	return Limits{}, 1
}

// basencOut is b encoded by the host's basenc with the flags given
// (--base32, --base64url -w 0, …).
func basencOut(t testing.TB, b []byte, flags ...string) string {
	t.Helper()
	cmd := exec.Command("basenc", flags...)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("basenc %v: %v", flags, err)
	}
	return string(out)
}

// pyLiterals is s as adjacent Python string literals of n characters,
// one a line, inside parentheses.
func pyLiterals(s string, n int) string {
	var sb strings.Builder
	sb.WriteString("(\n")
	for len(s) > 0 {
		k := min(n, len(s))
		sb.WriteString("    '" + s[:k] + "'\n")
		s = s[k:]
	}
	sb.WriteString(")")
	return sb.String()
}

// A program written in the other encodings of coreutils' basenc, which
// every Debian and Ubuntu image holds (base32, base32hex, base64url,
// base2), or in Python's counterparts, is read as they read it: each
// case checked against the tool.
func TestBasencPayloadsRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	k := len(miner)/2 + 1 // not a multiple of 5 or 3: the first half is padded
	b32 := strings.TrimSpace(basencOut(t, miner, "--base32", "-w", "0"))
	url := strings.TrimSpace(basencOut(t, miner, "--base64url", "-w", "0"))
	cases := []struct {
		name, shell, script, prefix string
	}{
		{"base32 -d of a here-document", "bash",
			"base32 -d > k <<'EOF'\n" + basencOut(t, miner, "--base32") + "EOF\n", "base32@"},
		{"base32 -d of two separately padded halves", "bash",
			"base32 -d > k <<'EOF'\n" + basencOut(t, miner[:k], "--base32") + basencOut(t, miner[k:], "--base32") + "EOF\n", "base32@"},
		{"lower-case base32, Python's b32decode with casefold", "python3",
			"import base64\nopen('k', 'wb').write(base64.b32decode('" + strings.ToLower(b32) + "', casefold=True))\n", "base32@"},
		{"basenc --base32hex -d", "bash",
			"basenc --base32hex -d > k <<'EOF'\n" + basencOut(t, miner, "--base32hex") + "EOF\n", "base32hex@"},
		{"basenc --base64url -d of a here-document", "bash",
			"basenc --base64url -d > k <<'EOF'\n" + basencOut(t, miner, "--base64url") + "EOF\n", "base64url@"},
		{"Python's urlsafe_b64decode of one literal", "python3",
			"import base64\nopen('k', 'wb').write(base64.urlsafe_b64decode('" + url + "'))\n", "base64url@"},
		{"Python's urlsafe_b64decode of adjacent literals, one a line", "python3",
			"import base64\nopen('k', 'wb').write(base64.urlsafe_b64decode" + pyLiterals(url, 70) + ")\n", "base64url@"},
		{"echo of one line piped to basenc --base64url -d", "bash",
			"echo '" + url + "' | basenc --base64url -d > k\n", "base64url@"},
		{"basenc --base2msbf -d", "bash",
			"basenc --base2msbf -d > k <<'EOF'\n" + basencOut(t, miner, "--base2msbf") + "EOF\n", "base2msbf@"},
		{"basenc --base2lsbf -d", "bash",
			"basenc --base2lsbf -d > k <<'EOF'\n" + basencOut(t, miner, "--base2lsbf") + "EOF\n", "base2lsbf@"},
	}
	for _, c := range cases {
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

// Runs in basenc's encodings longer than a window are read from the
// file's spool, as a whole.
func TestBasencPayloadsPastOneWindow(t *testing.T) {
	limits, scale := windowSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := samples.XMRig()
	big := append(bytes.Clone(miner), bytes.Repeat([]byte{0}, (11<<20)/scale)...) // over a window encoded
	// Base64url of zeros is "AAAA…", standard base64 too: the run holds
	// its first - or _ past the window. What it decodes to is no program
	// (zeros before one), but holds a miner's command line.
	late := append(bytes.Repeat([]byte{0}, (13<<20)/scale), miner...)
	for _, c := range []struct {
		name   string
		data   string
		prefix string
		rule   string
	}{
		{"base32 longer than a window", "base32 -d > k <<'EOF'\n" + basencOut(t, big, "--base32") + "EOF\n", "base32@", "MinerXMRig"},
		{"base64url longer than a window", "basenc --base64url -d > k <<'EOF'\n" + basencOut(t, big, "--base64url") + "EOF\n", "base64url@", "MinerXMRig"},
		{"base64url whose first - or _ is past a window", "basenc --base64url -d > k <<'EOF'\n" + basencOut(t, late, "--base64url") + "EOF\n", "base64url@", "MinerCommandLine"},
		{"base2 longer than a window", "basenc --base2msbf -d > k <<'EOF'\n" + basencOut(t, big[:(3<<20)/scale], "--base2msbf") + "EOF\n", "base2msbf@", "MinerXMRig"},
	} {
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.data)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, c.rule, "/opt/run.sh!"+c.prefix) {
			t.Errorf("%s: findings %v, want %s in /opt/run.sh!%s…", c.name, res.Findings, c.rule, c.prefix)
		}
	}
}

// Text in the letters of basenc's encodings that is no encoding is not
// decoded: words of upper-case letters, a bitmap of 0 and 1 without
// both, identifiers with _ and -.
func TestBasencTextNotDecoded(t *testing.T) {
	var words strings.Builder
	for i := 0; words.Len() < 8<<10; i++ {
		words.WriteString([]string{"ALPHA", "BRAVO", "CHARLIE", "DELTA"}[i%4])
	}
	for _, c := range []struct {
		name string
		text string
	}{
		{"upper-case words run together", words.String()},
		{"a line of zeros", strings.Repeat("0", 8<<10)},
		{"snake_case and kebab-case words", strings.Repeat("some_name other-name ", 600)},
	} {
		for _, p := range base64Payloads([]byte(c.text)) {
			if p.enc != encBase64 && p.enc != encHex {
				t.Errorf("%s: decoded as %s", c.name, p.enc.prefix())
			}
		}
	}
}

// base2 is b in basenc's base2, the highest bit first or the lowest.
func base2(b []byte, lsbf bool) string {
	var sb strings.Builder
	for _, c := range b {
		for k := range 8 {
			bit := c >> (7 - k) & 1
			if lsbf {
				bit = c >> k & 1
			}
			sb.WriteByte('0' + bit)
		}
	}
	return sb.String()
}

// basencRun reads each of basenc's encodings broken up as the forms it
// passes over break it (white space, quotes, \n escapes) as the
// encoding's own decoder reads the plain text, and stops at the first
// other byte; hostile input ends, with what it decoded, and never
// panics.
func FuzzBasencRun(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{3, 0, 7}, uint8(0))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6}, []byte{1, 1, 1, 1}, uint8(1))
	f.Add([]byte{0xfb, 0xff, 0xbf}, []byte{5}, uint8(2))
	f.Add([]byte("a"), []byte{}, uint8(3))
	f.Add([]byte("ab"), []byte{10, 0}, uint8(4))
	f.Add([]byte("abc"), []byte{0}, uint8(5))
	f.Fuzz(func(t *testing.T, payload, breaks []byte, form uint8) {
		encs := []struct {
			e    *basenc
			text string
		}{
			{urlBase64, base64.URLEncoding.EncodeToString(payload)},
			{base32Std, base32.StdEncoding.EncodeToString(payload)},
			{base32Hex, base32.HexEncoding.EncodeToString(payload)},
			{base2MSB, base2(payload, false)},
			{base2LSB, base2(payload, true)},
			{hexDigits, hex.EncodeToString(payload)},
		}
		c := encs[int(form)%len(encs)]
		seps := []string{"\n", "\t", " ", "\"\n\"", "\\n", "\r\n", "'"}
		var text []byte
		for i := range len(c.text) {
			if len(breaks) > 0 && breaks[i%len(breaks)]%5 == 0 && c.text[i] != '=' {
				text = append(text, seps[int(breaks[i%len(breaks)]/5)%len(seps)]...)
			}
			text = append(text, c.text[i])
		}
		text = append(text, '}', 'x', 'x', 'x', 'x')
		run := newBasencRun(bufio.NewReader(bytes.NewReader(text)), c.e, 0)
		got, err := io.ReadAll(run)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("decoded %q (%v) from %q, want %q", got, err, text, payload)
		}
		if want := int64(len(text) - 4); run.n != want {
			t.Fatalf("read %d bytes of the text, want %d (to its end)", run.n, want)
		}
		// Anything at all, at any alignment.
		for skip := range c.e.group {
			io.ReadAll(newBasencRun(bufio.NewReader(bytes.NewReader(append(breaks, payload...))), c.e, skip))
		}
	})
}

// linesOf is s wrapped in lines of the lengths given, over and over.
func linesOf(s string, lens ...int) string {
	var sb strings.Builder
	for k := 0; len(s) > 0; k++ {
		n := min(lens[k%len(lens)], len(s))
		sb.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	return sb.String()
}

// eachPadded is b encoded a byte at a time, each group padded on its
// own, with sep after each.
func eachPadded(b []byte, enc func([]byte) string, sep string) string {
	var sb strings.Builder
	for i := range b {
		sb.WriteString(enc(b[i:i+1]) + sep)
	}
	return sb.String()
}

// Blocks that base64's chains do not hold, which base64 -d and basenc -d
// read (outside attack round 25): lines shorter than a piece whose
// lengths do not fall as a wrapped block's do, each byte padded on its
// own, a word of other letters joined to a block (an output path before
// a here-document, a YAML key), mixed case with words after it.
func TestBlocksRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	b64 := base64.StdEncoding.EncodeToString(miner)
	b32 := base32.StdEncoding.EncodeToString(miner)
	rng := rand.New(rand.NewPCG(25, 1))
	random := make([]int, 64)
	for i := range random {
		random[i] = 1 + rng.IntN(40)
	}
	mixed := []byte(base32.HexEncoding.EncodeToString(miner))
	for i := range mixed {
		if rng.IntN(2) == 0 && mixed[i] >= 'A' {
			mixed[i] |= 0x20
		}
	}
	cases := []struct {
		name, shell, script, prefix string
	}{
		{"base64 in lines of 14 and 15", "bash",
			"base64 -d > k <<'EOF'\n" + linesOf(b64, 14, 15) + "EOF\n", "base64@"},
		{"base64 in lines of 1 and 2", "bash",
			"base64 -d > k <<'EOF'\n" + linesOf(b64, 1, 2) + "EOF\n", "base64@"},
		{"base32 in lines of 1 to 40 at random, a <<- here-document with tabs", "bash",
			"base32 -d > k <<-'EOF'\n\t" + strings.ReplaceAll(linesOf(b32, random...), "\n", "\n\t") + "EOF\n", "base32@"},
		{"base64 a letter a line, each followed by three blank lines", "bash",
			"base64 -d > k <<'EOF'\n" + strings.ReplaceAll(linesOf(b64, 1), "\n", "\n\n\n\n") + "EOF\n", "base64@"},
		{"base64 a byte a group, on one line", "bash",
			"base64 -d > k <<'EOF'\n" + eachPadded(miner, base64.StdEncoding.EncodeToString, "") + "\nEOF\n", "base64@"},
		{"base64url a byte a group, one a line", "bash",
			"basenc --base64url -d > k <<'EOF'\n" + eachPadded(miner, base64.URLEncoding.EncodeToString, "\n") + "EOF\n", "base64@"},
		{"base32 a byte a group, on one line", "bash",
			"base32 -d > k <<'EOF'\n" + eachPadded(miner, base32.StdEncoding.EncodeToString, "") + "\nEOF\n", "base32@"},
		{"base32 here-document after a long output path", "bash",
			"set -e\nbase32 -d > k <<'EOF'\n" + basencOut(t, miner, "--base32") + "EOF\n: /usr/local/bin/kworkerd-helper-service\n", "base32@"},
		{"base32 after an output path on the command line", "bash",
			"base32 -d > ./.cache-kworkerd-helper-service <<'EOF'\n" + basencOut(t, miner, "--base32") + "EOF\ncp ./.cache-kworkerd-helper-service k\n", "base32@"},
		{"base2 after a long YAML key", "bash",
			"cat > c.yaml <<'EOF'\nminerConfigBlob01: " + base2(miner, false) + "\nEOF\nsed -n 's/^minerConfigBlob01: //p' c.yaml | basenc --base2msbf -d > k\n", "base2msbf@"},
		{"base32hex in mixed case, Python's casefold, words after it", "python3",
			"import base64, os\nD = '" + string(mixed) + "'\nopen('k', 'wb').write(base64.b32hexdecode(D, casefold=True))\n", "base32hex@"},
	}
	for _, c := range cases {
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

// A payload decoded at an alignment its letters do not end whole in is
// bytes no tool writes: its start is not taken for gzip's LZH method by
// that method's two bytes (one in 65,536 such payloads would be), while
// the alignment a run ends whole in still is.
func TestUnalignedPayloadNotLZH(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	text := base64.StdEncoding.EncodeToString(append([]byte{0x7e, 0x80, 0}, samples.Filler(6<<10)...))
	// "A" before "fo…" decodes from its first letter to 1f a0 ….
	if !strings.HasPrefix(text, "foAA") {
		t.Fatalf("text starts %q", text[:4])
	}
	res, err := scanOne(t, s, tfile{name: "opt/data.txt", mode: 0o644, data: []byte("A" + text + "\n")})
	if err != nil || len(res.Findings) > 0 {
		t.Fatalf("a misaligned reading's 1f a0: %v, findings %v", err, res.Findings)
	}
	lzh := base64.StdEncoding.EncodeToString(append([]byte{0x1f, 0xa0}, samples.Filler(6<<10)...))
	res, err = scanOne(t, s, tfile{name: "opt/data.txt", mode: 0o644, data: []byte("AB" + lzh + "\n")})
	if err != nil || !hasFindingUnder(res.Findings, "ArchiveUnreadable", "/opt/data.txt!base64@") {
		t.Fatalf("gzip's LZH method in base64: %v, findings %v", err, res.Findings)
	}
}

// A wrapped block joined to the words before it (a here-document's
// command line with an output path, and its marker) is also read from
// its first line, so the program is decoded from its first byte.
func TestBlockReadFromItsFirstLine(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	for _, c := range []struct{ name, script, prefix string }{
		{"base32", "#!/bin/sh\nset -e\nbase32 -d > k <<'EOF'\n" + basencOut(t, miner, "--base32") + "EOF\n", "base32@"},
		{"base32, an output path", "#!/bin/sh\nbase32 -d > /usr/local/bin/kworkerd <<'EOF'\n" + basencOut(t, miner, "--base32") + "EOF\n", "base32@"},
		{"base64, an output path", "#!/bin/sh\nbase64 -d > /usr/local/bin/kworkerd <<'EOF'\n" + basencOut(t, miner, "--base64") + "EOF\n", "base64@"},
	} {
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.script)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!"+c.prefix) {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!%s…", c.name, res.Findings, c.prefix)
		}
	}
}
