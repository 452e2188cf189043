package scanner

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// dropperPayload is what a makeself-style dropper carries: XMRig's release
// tarball, gzipped, padded with incompressible bytes so that its base64
// is several pieces long.
func dropperPayload() []byte {
	pad := samples.File{Path: "xmrig-6.21.0/README", Mode: 0o644, Data: samples.Filler(6 << 10)}
	return samples.Gzip(samples.Tar(append(samples.XMRigRelease(), pad)...))
}

// pieceSizes are the lengths a payload is cut into, in turn: some under
// minPiece, some under 4 KiB, some over, most not a multiple of four.
var pieceSizes = []int{1001, 4097, 333, 2050, 77, 3001, 19, 6}

// cut cuts s into pieces of pieceSizes, in turn.
func cut(s string) []string { return cutAt(s, pieceSizes) }

// cutLong cuts s into pieces of pieceSizes of minPiece or more: an
// unquoted piece shorter than that after a word ("echo ABCD") is taken
// for a word.
func cutLong(s string) []string { return cutAt(s, pieceSizes[:len(pieceSizes)-1]) }

func cutAt(s string, sizes []int) []string {
	var out []string
	for i := 0; len(s) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(s))
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// lines cuts s into lines of width.
func lines(s string, width int) []string {
	var out []string
	for len(s) > 0 {
		n := min(width, len(s))
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// each writes format, with each piece of parts in it, one after another.
func each(parts []string, format string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, format, p)
	}
	return b.String()
}

// joinForm is a way a script or a program carries a payload in pieces:
// text builds the file from the payload's base64; shell says that bash
// running the file writes the decoded payload to its output, python that
// python3 does.
type joinForm struct {
	name          string
	path          string
	shell, python bool
	text          func(enc string) string
}

func joinForms() []joinForm {
	quotes := func(enc string) string {
		var b strings.Builder
		for i, p := range cut(enc) {
			switch i % 3 {
			case 0:
				b.WriteString(`"` + p + `"`)
			case 1:
				b.WriteString(`'` + p + `'`)
			default:
				b.WriteString(p)
			}
		}
		return b.String()
	}
	return append([]joinForm{
		{"here-document with <<- and tabs", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\nbase64 -d <<-EOF\n" + each(lines(enc, 76), "\t\t%s\n") + "\tEOF\n"
		}},
		{"lines with leading and trailing spaces", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\nbase64 -d -i <<EOF\n" + each(lines(enc, 64), "   %s  \n") + "EOF\n"
		}},
		{"carriage returns only", "opt/app/payload.txt", false, false, func(enc string) string {
			return each(lines(enc, 76), "%s\r")
		}},
		{"quoted pieces of mixed kinds", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\nP=" + quotes(enc) + "\nprintf %s \"$P\" | base64 -d\n"
		}},
		{"line continuations", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\nprintf %s \\\n" + strings.Join(cut(enc), "\\\n") + " | base64 -d\n"
		}},
		{`appends P="${P}…"`, "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\nP=\n" + each(cut(enc), "P=\"${P}%s\"\n") + "printf %s \"$P\" | base64 -d\n"
		}},
		{"appends P+=…", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/bash\nP=''\n" + each(cut(enc), "P+=%s\n") + "printf %s \"$P\" | base64 -d\n"
		}},
		{`appends P="$P"'…'`, "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\nP=\n" + each(cut(enc), "P=\"$P\"'%s'\n") + "printf %s \"$P\" | base64 -d\n"
		}},
		{"echo and printf lines into one base64 -d", "tmp/i.sh", true, false, func(enc string) string {
			parts := cutLong(enc)
			return "#!/bin/sh\n{\n" + each(parts[:len(parts)/2], "  echo %s\n") +
				each(parts[len(parts)/2:], "  printf '%%s\\n' \"%s\"\n") + "} | base64 -d\n"
		}},
		{`Python "…" "…"`, "app/run.py", false, true, func(enc string) string {
			return "import base64, sys\nP = (\n" + each(cut(enc), "    \"%s\"\n") + ")\nsys.stdout.buffer.write(base64.b64decode(P))\n"
		}},
		{`Python "…" + "…"`, "app/run.py", false, true, func(enc string) string {
			return "import base64, sys\nP = \"\"" + each(cut(enc), " + \\\n    '%s'") + "\nsys.stdout.buffer.write(base64.b64decode(P))\n"
		}},
		{`Perl "…" . "…"`, "app/run.pl", false, false, func(enc string) string {
			return "use MIME::Base64;\nmy $p = \"\"" + each(cut(enc), " .\n  \"%s\"") + ";\nprint decode_base64($p);\n"
		}},
		{"JavaScript '…' + '…'", "app/run.js", false, false, func(enc string) string {
			return "const p = ''" + each(cut(enc), "+'%s'") + ";\nrequire('fs').writeFileSync('/tmp/x', Buffer.from(p, 'base64'));\n"
		}},
		{"Python ''.join([…])", "app/run.py", false, true, func(enc string) string {
			return "import base64, sys\nP = ''.join([\n" + each(cut(enc), "    '%s',\n") + "])\nsys.stdout.buffer.write(base64.b64decode(P))\n"
		}},
		{"JavaScript [...].join('')", "app/run.js", false, false, func(enc string) string {
			return "const p = [" + each(cut(enc), "\"%s\", ") + "].join('');\n"
		}},
		{`appends with a long name N="${N}…"`, "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/sh\n" + longName + "=\n" + each(cut(enc), longName+"=\"${"+longName+"}%s\"\n") +
				"printf %s \"$" + longName + "\" | base64 -d\n"
		}},
		{"appends with a long name N+=…", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/bash\n" + longName + "=''\n" + each(cut(enc), longName+"+=%s\n") +
				"printf %s \"${" + longName + "}\" | base64 -d\n"
		}},
		{`an array with a long name N+=("…"), "${N[@]}"`, "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/bash\n" + longName + "=()\n" + each(cut(enc), longName+"+=(\"%s\")\n") +
				"printf %s \"${" + longName + "[@]}\" | base64 -d\n"
		}},
		{`Python N += "…" with a long name`, "app/run.py", false, true, func(enc string) string {
			return "import base64, sys\n" + longName + " = \"\"\n" + each(cut(enc), longName+" += \"%s\"\n") +
				"sys.stdout.buffer.write(base64.b64decode(" + longName + "))\n"
		}},
		{`JavaScript N += "…" with a long name`, "app/run.js", false, false, func(enc string) string {
			return "let " + longName + " = \"\";\n" + each(cut(enc), longName+" += \"%s\";\n") +
				"require('fs').writeFileSync('/tmp/x', Buffer.from(" + longName + ", 'base64'));\n"
		}},
		{`Python b"…" b"…"`, "app/run.py", false, true, func(enc string) string {
			return "import base64, sys\nP = (\n" + each(cut(enc), "    b\"%s\"\n") + ")\nsys.stdout.buffer.write(base64.b64decode(P))\n"
		}},
		{`Python rb'…' rb'…'`, "app/run.py", false, true, func(enc string) string {
			return "import base64, sys\nP = (" + each(cut(enc), "\n    rb'%s'") + ")\nsys.stdout.buffer.write(base64.b64decode(P))\n"
		}},
		{`Python f"…" R"…" u"…"`, "app/run.py", false, true, func(enc string) string {
			var b strings.Builder
			for i, p := range cut(enc) {
				fmt.Fprintf(&b, "    %s\"%s\"\n", []string{"f", "R", "u"}[i%3], p)
			}
			return "import base64, sys\nP = (\n" + b.String() + ")\nsys.stdout.buffer.write(base64.b64decode(P))\n"
		}},
		{"an array of unquoted 15-character elements over lines", "tmp/i.sh", true, false, func(enc string) string {
			var b strings.Builder
			for i, p := range cutAt(enc, []int{15}) {
				b.WriteString(p + []string{" ", " ", " ", "\n  "}[i%4])
			}
			return "#!/bin/bash\nA=(\n  " + b.String() + ")\nprintf %s \"${A[@]}\" | base64 -d\n"
		}},
		{"an array of unquoted elements of mixed sizes after a quoted one", "tmp/i.sh", true, false, func(enc string) string {
			var b strings.Builder
			for i, p := range cutAt(enc[1001:], []int{7, 15, 3, 12, 1, 9}) {
				b.WriteString(p + []string{" ", "\n", "\t", "  \n\t"}[i%4])
			}
			return "#!/bin/bash\nA+=( '" + enc[:1001] + "'\n" + b.String() + ")\nprintf %s \"${A[@]}\" | base64 -d\n"
		}},
		{"a data file with no #! read by an entrypoint", "opt/app/blob", false, false, func(enc string) string {
			return each(lines(enc, 76), "%s\n")
		}},
		{"a .txt data file", "opt/app/data.txt", false, false, func(enc string) string {
			return each(lines(enc, 64), "%s\n")
		}},
		{"a .b64 file on one line", "opt/app/x.b64", false, false, func(enc string) string { return enc + "\n" }},
	}, arrayJoinForms()...)
}

// longName is a variable's name of more than minPiece characters of the
// base64 alphabet, which a payload is appended to piece by piece.
const longName = "encodedInstallerPayload2"

// Each way of carrying a payload in pieces is read whole: the search
// decodes the whole payload from one run, and the layer with the file in
// it is refused for the miner inside the payload's tarball. Where bash
// (or python3, when the machine has it) runs the file, what it decodes is
// the payload itself, so the join tested is the one the host makes.
func TestBase64JoinedAsTheyRun(t *testing.T) {
	payload := dropperPayload()
	enc := base64.StdEncoding.EncodeToString(payload)
	s := newTestScanner(t, Options{Workers: 2})
	for _, f := range joinForms() {
		t.Run(f.name, func(t *testing.T) {
			text := f.text(enc)
			samePayloads(t, []byte(text))
			found := false
			for _, p := range base64Payloads([]byte(text)) {
				found = found || bytes.HasPrefix(p.decode(), payload)
			}
			if !found {
				t.Error("no run decodes to the payload")
			}
			switch {
			case f.shell:
				runsTo(t, payload, "bash", "-c", text)
			case f.python:
				if _, err := exec.LookPath("python3"); err == nil {
					runsTo(t, payload, "python3", "-c", text)
				}
			}
			refusedFor(t, s, f.path, text)
		})
	}
}

// runsTo runs a command and checks that it writes want.
func runsTo(t *testing.T, want []byte, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("%s decodes %d bytes, not the %d byte payload: the form does not carry it", name, len(out), len(want))
	}
}

// What is not a payload's pieces stays out of its run: words between two
// values, a here-document's closing word, a list of words joined by
// commas, and a command line between a quoted word and a block.
func TestBase64JoinKeepsWordsOut(t *testing.T) {
	payload := samples.Filler(6003)
	enc := base64.StdEncoding.EncodeToString(payload)
	cases := []struct{ name, text string }{
		{"a quoted delimiter and a command line before a block", "cat <<'EOF' | base64 -d | tar xz -C /tmp\n" + each(lines(enc, 76), "%s\n") + "EOF\n"},
		{"a quoted delimiter before a block", "#!/bin/sh\ncat <<'EOF' | base64 -d\n" + each(lines(enc, 76), "%s\n") + "EOF\n"},
		{"a quoted delimiter of <<- before a block", "#!/bin/sh\nbase64 -d <<-\"EOF\"\n" + each(lines(enc, 76), "\t%s\n") + "\tEOF\n"},
		{"a word closing a block", "base64 -d <<E\n" + each(lines(enc, 76), "%s\n") + "DATA\n/tmp/run\n"},
		{"echo and names between values", "{ echo " + strings.Join(cutLong(enc), "; echo ") + "; } | base64 -d\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := base64Payloads([]byte(c.text))
			if len(got) == 0 || !bytes.Equal(got[0].decode(), payload) || got[0].offset != strings.Index(c.text, enc[:16]) {
				t.Fatalf("%d payloads, the first not the payload alone from its first character", len(got))
			}
		})
	}
	// Python keyword tables: thousands of quoted words within a few bytes
	// of each other, joined into one long run, which does not look
	// encoded (no digits) and is not decoded.
	var words strings.Builder
	words.WriteString("KEYWORDS = (\n")
	for i := range 3000 {
		fmt.Fprintf(&words, "    '%s', '%s',\n", strings.Repeat("abcdefg"[i%7:], 1), "xyzzy")
	}
	words.WriteString(")\n")
	if got := base64Payloads([]byte(words.String())); len(got) != 0 {
		t.Fatalf("%d payloads decoded from a list of words", len(got))
	}
	// A file of one letter: one long piece that is no base64 of anything.
	if got := base64Payloads(bytes.Repeat([]byte("x"), 1<<20)); len(got) != 0 {
		t.Fatalf("%d payloads decoded from a run of one letter", len(got))
	}
}

// paddedChunks is payload cut into chunks of size bytes, each encoded on
// its own (padded), one a line.
func paddedChunks(payload []byte, size int) string {
	var b strings.Builder
	for len(payload) > 0 {
		n := min(size, len(payload))
		b.WriteString(base64.StdEncoding.EncodeToString(payload[:n]) + "\n")
		payload = payload[n:]
	}
	return b.String()
}

// Separately padded chunks one after another, as base64 -d reads them:
// 76-character lines each ending in "=", 4,004-character lines ending in
// "==", in a data file an entrypoint decodes and in a here-document. The
// file decodes to the payload with coreutils base64 -d, the search
// decodes it whole from one stream, and the layer is refused.
func TestBase64PaddedChunksRead(t *testing.T) {
	payload := dropperPayload()
	s := newTestScanner(t, Options{Workers: 2})
	cases := []struct {
		name, path string
		heredoc    bool
		size       int
	}{
		{"76-character lines ending in =", "opt/app/blob", false, 56},
		{"4,004-character chunks ending in ==", "opt/app/blob", false, 3001},
		{"chunks ending in == in a here-document", "tmp/i.sh", true, 3001},
		{"chunks of 1,000 bytes, wrapped at 76", "opt/app/blob", false, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := paddedChunks(payload, c.size)
			if c.size == 1000 {
				var b strings.Builder
				for _, chunk := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
					b.WriteString(each(lines(chunk, 76), "%s\n"))
				}
				text = b.String()
			}
			if c.heredoc {
				text = "#!/bin/sh\nbase64 -d <<EOF\n" + text + "EOF\n"
				runsTo(t, payload, "bash", "-c", text)
			} else {
				cmd := exec.Command("base64", "-d")
				cmd.Stdin = strings.NewReader(text)
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, payload) {
					t.Fatalf("base64 -d: %d bytes, %v: the form does not carry the payload", len(out), err)
				}
			}
			samePayloads(t, []byte(text))
			found := false
			for _, p := range base64Payloads([]byte(text)) {
				found = found || bytes.Equal(p.decode(), payload)
			}
			if !found {
				t.Error("no stream decodes to the payload")
			}
			refusedFor(t, s, c.path, text)
		})
	}
}

// refusedFor scans a layer holding text at path, and an entrypoint that
// decodes it, and checks that it is refused for the miner in the payload.
func refusedFor(t *testing.T, s *Scanner, path, text string) {
	t.Helper()
	res, err := scanOne(t, s, tfile{name: path, mode: 0o644, data: []byte(text)},
		tfile{name: "entrypoint.sh", mode: 0o755, data: []byte("#!/bin/sh\nbase64 -d /" + path + " | tar xz -C /tmp\n")})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := findingOf(res.Findings, "MinerXMRig")
	if !ok || !strings.HasPrefix(m.Path, "/"+path+"!base64@") || !strings.HasSuffix(m.Path, "!xmrig-6.21.0/xmrig") {
		t.Fatalf("findings %+v, want MinerXMRig on /%s!base64@…!xmrig-6.21.0/xmrig", res.Findings, path)
	}
	if len(res.Blocking()) == 0 {
		t.Fatalf("findings %+v: not refused", res.Findings)
	}
}
