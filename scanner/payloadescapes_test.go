package scanner

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// everyNth writes every n-th character of s (from the first) with esc.
func everyNth(s string, n int, esc func(c byte) string) string {
	var b strings.Builder
	for i := range len(s) {
		if i%n == 0 {
			b.WriteString(esc(s[i]))
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// escapeForm is a value whose base64 is written with its holder's
// escapes; reader is a python3 expression that gives back the value from
// the file f, or a jq filter when jq is set.
type escapeForm struct {
	name, path, reader string
	jq                 bool
	text               func(enc string) string
}

func escapeForms() []escapeForm {
	const (
		jsonValue = "import json,sys; sys.stdout.write(json.load(open(f))['data'])"
		xmlValue  = "import xml.etree.ElementTree as E,sys; sys.stdout.write(E.parse(f).getroot().text)"
	)
	json := func(v string) string { return `{"name": "app", "data": "` + v + "\"}\n" }
	xml := func(v string) string { return "<?xml version=\"1.0\"?>\n<d>" + v + "</d>\n" }
	u := func(c byte) string { return fmt.Sprintf(`\u%04x`, c) }
	r := strings.NewReplacer
	return []escapeForm{
		{"JSON every 10th character as \\uXXXX", "opt/app/f.json", jsonValue, false, func(enc string) string { return json(everyNth(enc, 10, u)) }},
		{"JSON every 10th character as \\uXXXX, read by jq", "opt/app/f.json", ".data", true, func(enc string) string { return json(everyNth(enc, 10, u)) }},
		{"JSON every 3rd character as \\uXXXX", "opt/app/f.json", jsonValue, false, func(enc string) string { return json(everyNth(enc, 3, u)) }},
		{"JSON + as \\u002b", "opt/app/f.json", ".data", true, func(enc string) string { return json(r("+", `\u002b`).Replace(enc)) }},
		{"JSON + and / as \\u002B and \\u002F", "opt/app/f.json", jsonValue, false, func(enc string) string {
			return json(r("+", `\u002B`, "/", `\u002F`, "=", `\u003d`).Replace(enc))
		}},
		{"JSON + and / as \\u002b and \\/", "opt/app/f.json", ".data", true, func(enc string) string { return json(r("+", `\u002b`, "/", `\/`).Replace(enc)) }},
		// json.dumps of base64 wrapped at 76: the "n" of each "\n" is
		// glued to the next line.
		{"JSON wrapped at 76 with \\n", "opt/app/f.json", jsonValue, false, func(enc string) string { return json(wrapWith(enc, 76, `\n`)) }},
		{"JSON wrapped at 64 with \\r\\n, + as \\u002b", "opt/app/f.json", ".data", true, func(enc string) string {
			return json(r("+", `\u002b`).Replace(wrapWith(enc, 64, `\r\n`)))
		}},
		{"JSON wrapped at 76 with \\u000a", "opt/app/f.json", jsonValue, false, func(enc string) string { return json(wrapWith(enc, 76, `\u000a`)) }},
		{"XML + as &#43;", "opt/app/f.xml", xmlValue, false, func(enc string) string { return xml(r("+", "&#43;").Replace(enc)) }},
		{"XML + / = as &#x2B; &#x2f; &#61;", "opt/app/f.xml", xmlValue, false, func(enc string) string {
			return xml(r("+", "&#x2B;", "/", "&#x2f;", "=", "&#61;").Replace(enc))
		}},
		{"XML + and / as &#x2b; and &#47;", "opt/app/f.xml", xmlValue, false, func(enc string) string { return xml(r("+", "&#x2b;", "/", "&#47;").Replace(enc)) }},
		{"XML every 10th character as &#DDD;", "opt/app/f.xml", xmlValue, false, func(enc string) string {
			return xml(everyNth(enc, 10, func(c byte) string { return fmt.Sprintf("&#%d;", c) }))
		}},
	}
}

// wrapWith is s with sep after every width characters of it.
func wrapWith(s string, width int, sep string) string {
	var b strings.Builder
	for len(s) > width {
		b.WriteString(s[:width] + sep)
		s = s[width:]
	}
	b.WriteString(s)
	return b.String()
}

// A value whose base64 is written with its holder's escapes is read
// whole: the holder's own reader (python3's json and ElementTree, jq)
// gives back the plain base64, the search decodes the payload from the
// chain unescaped, and the layer is refused for the miner inside.
func TestBase64HolderEscapesRead(t *testing.T) {
	payload := dropperPayload()
	enc := base64.StdEncoding.EncodeToString(payload)
	s := newTestScanner(t, Options{Workers: 2})
	for _, f := range escapeForms() {
		t.Run(f.name, func(t *testing.T) {
			text := f.text(enc)
			holderReads(t, f, text, enc)
			samePayloads(t, []byte(text))
			found := false
			for _, p := range base64Payloads([]byte(text)) {
				if bytes.Contains(p.decode(), payload) {
					found = true
					if !p.unescaped || !strings.HasPrefix(p.name(0), "base64@") || !strings.Contains(p.name(0), "+unescaped") {
						t.Errorf("payload named %q, want base64@…+unescaped", p.name(0))
					}
				}
			}
			if !found {
				t.Fatal("no payload decodes to the payload")
			}
			refusedFor(t, s, f.path, text)
		})
	}
}

// holderReads checks that the holder's reader gives back enc from text,
// line breaks aside.
func holderReads(t *testing.T, f escapeForm, text, enc string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	switch {
	case f.jq:
		if _, err := exec.LookPath("jq"); err != nil {
			t.Log("no jq: the form is not proven by its reader")
			return
		}
		cmd = exec.Command("jq", "-j", f.reader, file)
	default:
		if _, err := exec.LookPath("python3"); err != nil {
			t.Log("no python3: the form is not proven by its reader")
			return
		}
		cmd = exec.Command("python3", "-c", "f = "+fmt.Sprintf("%q", file)+"\n"+f.reader)
	}
	out, err := cmd.Output()
	// base64 -d reads past line breaks: a wrapped value carries enc.
	if got := strings.Join(strings.Fields(string(out)), ""); err != nil || got != enc {
		t.Fatalf("%s gives back %d characters (%v), not the %d of the base64: the form does not carry it", cmd.Args[0], len(out), err, len(enc))
	}
}

// Escapes cost nothing where no long chain holds them, and are not taken
// for a payload's characters where they stand for others: a JSON file of
// escaped text ("\u4e2d\u6587", "\u003c"), a short escaped value, an
// XML file of references, and a long base64 value with "\/" alone, which
// reads right as it is and is not read twice.
func TestBase64EscapesKeptOut(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString(dropperPayload())
	cjk := strings.Repeat(`\u4e2d\u6587\u003c\u00e9 `, 2000)
	cases := []struct {
		name string
		text string
		want int // payloads
	}{
		{"escaped text", `{"t": "` + cjk + "\"}\n", 0},
		{"a short escaped value", `{"t": "` + everyNth(enc[:2000], 10, func(c byte) string { return fmt.Sprintf(`\u%04x`, c) }) + "\"}\n", 0},
		{"references", strings.Repeat("<p>&#169; &#x2014; &#65;&#66; text</p>\n", 3000), 0},
		{"a long value with \\/ alone", `{"t": "` + strings.ReplaceAll(enc, "/", `\/`) + "\"}\n", 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			samePayloads(t, []byte(c.text))
			got := base64Payloads([]byte(c.text))
			if len(got) != c.want {
				t.Fatalf("%d payloads, want %d", len(got), c.want)
			}
			for _, p := range got {
				if p.unescaped {
					t.Fatalf("payload %s read from an unescaped copy", p.name(0))
				}
			}
		})
	}
}
