package scanner

import (
	"bufio"
	"bytes"
	"encoding/ascii85"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// pyOut is what a Python expression over the bytes b (read from stdin
// as d) prints, as text.
func pyOut(t testing.TB, b []byte, expr string) string {
	t.Helper()
	cmd := exec.Command("python3", "-c", "import base64, sys\nd = sys.stdin.buffer.read()\nsys.stdout.write("+expr+")")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 %s: %v", expr, err)
	}
	return string(out)
}

// wrapped is s in lines of n characters.
func wrapped(s string, n int) string {
	var sb strings.Builder
	for len(s) > n {
		sb.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	sb.WriteString(s + "\n")
	return sb.String()
}

// A program written in base85, in any of its three alphabets, is read as
// the host's decoders read it: each case checked against the tool.
func TestBase85PayloadsRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	a85 := pyOut(t, miner, "base64.a85encode(d).decode()")
	b85 := pyOut(t, miner, "base64.b85encode(d).decode()")
	z := strings.ReplaceAll(basencOut(t, append(bytes.Clone(miner), make([]byte, (4-len(miner)%4)%4)...), "--z85", "-w", "0"), "\n", "")
	cases := []struct {
		name, shell, script, prefix string
		trim                        int // zeros the encoding adds at the end
	}{
		{"a85decode of a here-document's lines", "bash",
			"python3 -c 'import base64,sys; open(\"k\",\"wb\").write(base64.a85decode(sys.stdin.read()))' <<'EOF'\n" + wrapped(a85, 76) + "EOF\n", "ascii85@", 0},
		{"a85decode of a raw bytes literal", "python3",
			"import base64\nopen('k', 'wb').write(base64.a85decode(rb\"\"\"" + a85 + "\"\"\"))\n", "ascii85@", 0},
		{"a85decode of Adobe's <~ ~> in lines", "python3",
			"import base64\nopen('k', 'wb').write(base64.a85decode(r\"\"\"<~" + wrapped(a85, 70) + "~>\"\"\", adobe=True))\n", "ascii85@", 0},
		{"b85decode of one literal", "python3",
			"import base64\nopen('k', 'wb').write(base64.b85decode('" + b85 + "'))\n", "base85@", 0},
		{"b85decode of adjacent literals, one a line", "python3",
			"import base64\nopen('k', 'wb').write(base64.b85decode" + pyLiterals(b85, 70) + ")\n", "base85@", 0},
		{"a85decode of letters two spaces apart", "bash",
			"python3 -c 'import base64,sys; open(\"k\",\"wb\").write(base64.a85decode(sys.stdin.read()))' <<'EOF'\n" + strings.Join(strings.Split(a85, ""), "  ") + "\nEOF\n", "ascii85@", 0},
		{"basenc --z85 -d of a letter a line, each followed by a blank line", "bash",
			"basenc --z85 -d > k <<'EOF'\n" + strings.Join(strings.Split(z, ""), "\n\n") + "\nEOF\n", "z85@", (4 - len(miner)%4) % 4},
		{"basenc --z85 -d of a here-document", "bash",
			"basenc --z85 -d > k <<'EOF'\n" + wrapped(z, 75) + "EOF\n", "z85@", (4 - len(miner)%4) % 4},
	}
	for _, c := range cases {
		got := runScript(t, c.shell, c.script)
		if len(got) >= c.trim && bytes.Equal(got[:len(got)-c.trim], miner) && !bytes.ContainsFunc(got[len(got)-c.trim:], func(r rune) bool { return r != 0 }) {
		} else {
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

// A run of base85 longer than a window is read from the spool, whole.
func TestBase85PayloadsPastOneWindow(t *testing.T) {
	limits, scale := windowSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	big := append(bytes.Clone(samples.XMRig()), samples.Filler((14<<20)/scale)...) // over a window encoded
	for _, c := range []struct {
		name, data, prefix string
	}{
		{"Ascii85 lines", "python3 -c 'import base64,sys; sys.stdout.buffer.write(base64.a85decode(sys.stdin.read()))' > k <<'EOF'\n" + wrapped(pyOut(t, big, "base64.a85encode(d).decode()"), 76) + "EOF\n", "ascii85@"},
		{"Z85 lines", "basenc --z85 -d > k <<'EOF'\n" + wrapped(strings.ReplaceAll(basencOut(t, big[:len(big)/4*4], "--z85", "-w", "0"), "\n", ""), 75) + "EOF\n", "z85@"},
	} {
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: []byte(c.data)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingUnder(res.Findings, "MinerXMRig", "/opt/run.sh!"+c.prefix) {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/run.sh!%s…", c.name, res.Findings, c.prefix)
		}
	}
}

// Text whose letters are base85's but is no base85 is not decoded as
// it: base64, hex, minified code.
func TestBase85TextNotDecoded(t *testing.T) {
	blob := samples.Filler(6 << 10)
	var hexText bytes.Buffer
	for _, c := range blob {
		hexText.WriteString("0123456789abcdef"[c>>4 : c>>4+1])
	}
	for _, c := range []struct {
		name string
		text string
	}{
		{"base64 on one line", pyOut(t, blob, "base64.b64encode(d).decode()")},
		{"hex on one line", hexText.String()},
		{"URLs one a line", strings.Repeat("https://example.com/a/b?c=1&d=2\n", 300)},
	} {
		for _, p := range base64Payloads([]byte(c.text)) {
			if base85s[p.enc] != nil {
				t.Errorf("%s: decoded as %s", c.name, p.enc.prefix())
			}
		}
	}
}

// base85Run reads Ascii85 as encoding/ascii85 does, through the white
// space it passes over, and stops at the first other byte; hostile input
// ends and never panics.
func FuzzBase85Run(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{3, 0, 7})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3}, []byte{1, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, []byte{})
	f.Fuzz(func(t *testing.T, payload, breaks []byte) {
		enc := make([]byte, ascii85.MaxEncodedLen(len(payload)))
		enc = enc[:ascii85.Encode(enc, payload)]
		var text []byte
		for i, c := range enc {
			if len(breaks) > 0 && breaks[i%len(breaks)]%5 == 0 {
				text = append(text, " \n\t\r"[breaks[i%len(breaks)]/5%4])
			}
			text = append(text, c)
		}
		text = append(text, '~', 'x')
		run := newBase85Run(bufio.NewReader(bytes.NewReader(text)), alphaA85, 0)
		got, err := io.ReadAll(run)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("decoded %x (%v) from %q, want %x", got, err, text, payload)
		}
		if want := int64(len(text) - 1); run.n != want {
			t.Fatalf("read %d bytes of the text, want %d (to its end)", run.n, want)
		}
		for _, e := range []*base85{alphaA85, alphaB85, alphaZ85} {
			for skip := range 5 {
				io.ReadAll(newBase85Run(bufio.NewReader(bytes.NewReader(append(breaks, payload...))), e, skip))
			}
		}
	})
}
