package scanner

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// arrayGaps are what may stand between two elements of a bash array,
// some of which the search passes (a comment, a continued line, an
// append's start) and some of which end the chain or hold a piece of
// their own (a quoted word or a long word in a comment).
var arrayGaps = []string{
	" ", "\n  ", " \\\n  ", "\\\n", "\\\n\t", "  # part two\n  ", "\n  # part 3: 165 bytes\n  ",
	"\n# a\n\n# b\n", ")\nA+=(", ") ; A+=(", ")\n\nlonger_name9+=( ", " # 'quoted' word\n", " # " + strings.Repeat("x", 20) + "\n",
	" # " + strings.Repeat("y", 170) + "\n", ")\nB=(", " \"q\" ", " 'QUJD' ", "\n  $x ", " #glued\n", "\n  ABCDEFGHIJKLMNOPQRS ",
}

// randomArray is a script holding enc in an array of unquoted elements
// of random sizes with random gaps, after a random amount of text, so
// that the probes land everywhere in and around it.
func randomArray(rng *rand.Rand, enc string, rarity int) []byte {
	var b strings.Builder
	b.WriteString("#!/bin/bash\n" + strings.Repeat("echo x y z\n", rng.IntN(400)) + "A=(")
	if rng.IntN(3) == 0 {
		b.WriteString(" \\\n ")
	}
	for len(enc) > 0 {
		n := min(len(enc), 1+rng.IntN(15))
		b.WriteString(enc[:n])
		enc = enc[n:]
		gap := " "
		if rng.IntN(rarity) == 0 {
			gap = arrayGaps[rng.IntN(len(arrayGaps))]
		}
		b.WriteString(gap)
	}
	b.WriteString(")\nprintf %s \"${A[@]}\" | base64 -d\n")
	return []byte(b.String())
}

// The probing search finds in arrays with comments, continued lines and
// appends exactly what a look at every byte finds, wherever the probes
// land, and with the gaps that end a chain or hold a piece of their own.
func TestBase64ArrayGapsProbeAsEveryByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	enc := base64.StdEncoding.EncodeToString(samples.Filler(7000))
	found := 0
	for round := range 600 {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			data := randomArray(rng, enc, []int{3, 30, 300}[round%3])
			samePayloads(t, data)
			if len(everyBytePayloads(data)) > 0 {
				found++
			}
		})
	}
	if found == 0 {
		t.Fatal("no payload in any array: the test proves nothing")
	}
}

// shellWordArrays is a script of arrays of words as scripts write them:
// commented, continued and appended to, some appends to another array,
// which the search may join where bash does and nowhere else.
const shellWordArrays = `#!/bin/bash
# build the command line
args=(
  run --rm   # remove after
  # the image's name
  alpine sh
)
args+=(echo hello world)   # greeting
args+=(again)
cmd=(docker \
  run \
  image)
words=(alpha beta gamma)   # Greek
words+=(delta epsilon)
words+=(zeta eta theta)  # more
other+=(iota kappa)
list=( one two   # 'quoted' three
  four five )
parts=()
parts+=(first second third)   # the first three
parts+=(fourth fifth) ; parts+=(sixth)
# the rest
parts+=(seventh eighth \
  ninth tenth)
parts+=( eleventh   # one more
  twelfth )
"${cmd[@]}" "${args[@]}"
`

// shellScripts reads the shell scripts of this machine that assign
// arrays: bash's completions, and scripts with a #! line for sh or bash
// under /usr/bin, /usr/sbin, /etc and /usr/lib/git-core.
func shellScripts(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, root := range []string{"/usr/share/bash-completion", "/usr/bin", "/usr/sbin", "/etc", "/usr/lib/git-core"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if info, err := d.Info(); err != nil || info.Size() > 1<<20 {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(data, []byte("=(")) {
				return nil
			}
			line, _, _ := bytes.Cut(data, []byte("\n"))
			shell := bytes.HasPrefix(line, []byte("#!")) && (bytes.HasSuffix(line, []byte("sh")) || bytes.Contains(line, []byte("bash")))
			if shell || strings.HasPrefix(p, "/usr/share/bash-completion/") {
				out[p] = data
			}
			return nil
		})
	}
	if len(out) < 20 {
		t.Fatalf("%d shell scripts with arrays on this machine: the test would prove little", len(out))
	}
	return out
}

// Words of arrays are joined through comments, continued lines and
// appends only where bash joins them: real scripts of this machine and
// a script of word arrays yield no payload, and each link the search
// makes through such a gap joins two pieces that stand one after the
// other in what bash prints for the array (checked by bash where the
// array is written with literal words only).
func TestBase64ArrayGapsKeepWordsOut(t *testing.T) {
	files := shellScripts(t)
	files["words.sh"] = []byte(shellWordArrays)
	checked := map[string]int{}
	for name, data := range files {
		if got := base64Payloads(data); len(got) != 0 {
			t.Errorf("%s: %d payloads decoded from a script of words", name, len(got))
		}
		for _, l := range gapLinks(data) {
			want, ok := bashArray(t, data, l[0], l[1])
			if !ok {
				continue
			}
			checked[name]++
			joined := string(data[l[0].start:l[0].end]) + string(data[l[1].start:l[1].end])
			if !strings.Contains(want, joined) {
				t.Errorf("%s: %q joined across %q, not in bash's %q", name, joined, data[l[0].end:l[1].start], want)
			}
		}
	}
	t.Logf("%d scripts, links through comments, continued lines and appends checked by bash: %v", len(files), checked)
	if checked["words.sh"] < 8 {
		t.Fatalf("%d links checked in the script of word arrays: the test proves little", checked["words.sh"])
	}
}

// gapLinks are the links of the chains in data (read as the search of
// every byte reads them) from an element of an array to the next piece
// through a comment, a continued line or an append's start.
func gapLinks(data []byte) [][2]piece {
	var out [][2]piece
	for i := 0; ; {
		first, ok := nextPiece(data, i, len(data))
		if !ok {
			return out
		}
		for q := first; ; {
			next, ok := nextInChain(data, q)
			if !ok {
				break
			}
			gap := data[q.end:next.start]
			if q.array && (bytes.ContainsAny(gap, "#\\") || bytes.Contains(gap, []byte("+=("))) {
				out = append(out, [2]piece{q, next})
			}
			q = next
		}
		_, i = appendChainOf(nil, data, first, false)
	}
}

// bashArray is what bash prints for the array that holds the piece to,
// with the statements from the one that holds from to the one that
// holds to, when they are literal words only (nothing bash would run or
// expand); ok is false otherwise.
func bashArray(t *testing.T, data []byte, from, to piece) (string, bool) {
	t.Helper()
	open, ok := arrayOpen(data, from.start, 0)
	if !ok {
		return "", false
	}
	start := open - 2 - len(arrayName(data, open))
	if data[open-3] == '+' {
		start--
	}
	end := closingParen(data, to.end)
	if end < 0 {
		return "", false
	}
	region := data[start : end+1]
	if bytes.ContainsAny(region, "$`<>&|*?[]{}!") {
		return "", false
	}
	toOpen, _ := arrayOpen(data, to.start, 0)
	script := "set -f\n" + string(region) + "\nprintf %s \"${" + string(arrayName(data, toOpen)) + "[@]}\"\n"
	out, err := exec.Command("bash", "-c", script).Output()
	if err != nil {
		t.Fatalf("bash on %q: %v", script, err)
	}
	return string(out), true
}

// closingParen is where the ")" that ends the array around data[i]
// stands, past quotes, comments and escaped characters, or -1.
func closingParen(data []byte, i int) int {
	for quote := byte(0); i < len(data); i++ {
		switch c := data[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\\':
			i++
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && isSpace(data[i-1]):
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == ')':
			return i
		}
	}
	return -1
}

// Words around a payload held in an array stay out of it: comments with
// words of the base64 alphabet among its elements, an array before it,
// and appends to another array after it. The payload decodes whole from
// its first element, and nothing more.
func TestBase64ArrayGapsKeepWordsOutOfPayloads(t *testing.T) {
	payload := samples.Filler(6003)
	enc := base64.StdEncoding.EncodeToString(payload)
	var body strings.Builder
	for i, p := range cutAt(enc, []int{11, 7, 13}) {
		line := i / 3
		switch {
		case i%3 != 2:
			body.WriteString(p + " ")
		case line%10 == 9:
			body.WriteString(p + "\n  # part QUJD of " + fmt.Sprint(line) + "\n  ")
		case line%3 == 1:
			body.WriteString(p + "   # abc def\n  ")
		case line%4 == 2:
			body.WriteString(p + " \\\n  ")
		default:
			body.WriteString(p + "\n  ")
		}
	}
	cases := []struct{ name, text string }{
		{"comments of words among the elements", "A=(\n  " + body.String() + ")\n"},
		{"an array of words before", "opts=(run fast)  # QUJD\nA=(\n  " + body.String() + ")\n"},
		{"an array of words one a line before", "opts=(\n  run\n  fast\n)\nA=(\n  " + body.String() + ")\n"},
		{"appends to another array after", "A=(\n  " + body.String() + ")  # done\nother+=(alpha beta)\nother+=(gamma)\n"},
		{"appends of words after", "A=(" + body.String() + ")\nA+=(--opt value)\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			script := "#!/bin/bash\n" + c.text + "printf %s \"${A[@]}\" | base64 -d\n"
			if !strings.Contains(c.name, "appends of words") {
				runsTo(t, payload, "bash", "-c", script)
			}
			samePayloads(t, []byte(script))
			got := base64Payloads([]byte(script))
			if len(got) == 0 || !bytes.Equal(got[0].decode(), payload) || got[0].offset != strings.Index(script, enc[:11]) {
				t.Fatalf("%d payloads, the first not the payload alone from its first character", len(got))
			}
		})
	}
}

// arrayJoinForms are the ways of carrying a payload in a bash array with
// comments, continued lines or appends among its elements, or one
// element a line (see joinForms).
func arrayJoinForms() []joinForm {
	return []joinForm{
		{"an array of unquoted elements with comment lines and comments at lines' ends", "tmp/i.sh", true, false, func(enc string) string {
			var b strings.Builder
			for i, p := range cutAt(enc, []int{11, 7, 15, 3, 13, 9}) {
				switch {
				case i%3 != 2:
					b.WriteString(p + " ")
				case i%15 == 14:
					fmt.Fprintf(&b, "%s\n  # part %d: the next %d bytes\n  ", p, i/15+2, 15*11)
				case i%6 == 5:
					fmt.Fprintf(&b, "%s   # (%d)\n  ", p, i)
				default:
					b.WriteString(p + "\n  ")
				}
			}
			return "#!/bin/bash\nA=(\n  " + b.String() + "\n)\nprintf %s \"${A[@]}\" | base64 -d\n"
		}},
		{"appends of several unquoted elements A+=(p1 p2 p3) line after line", "tmp/i.sh", true, false, func(enc string) string {
			var b strings.Builder
			parts := cutAt(enc, []int{11, 7, 15, 3, 13, 9})
			for i := 0; i < len(parts); i += 3 {
				b.WriteString("A+=(" + strings.Join(parts[i:min(i+3, len(parts))], " ") + ")\n")
			}
			return "#!/bin/bash\nA=()\n" + b.String() + "printf %s \"${A[@]}\" | base64 -d\n"
		}},
		{"an array of unquoted elements continued with backslashes at lines' ends", "tmp/i.sh", true, false, func(enc string) string {
			var b strings.Builder
			for i, p := range cutAt(enc, []int{11, 7, 15, 3, 13, 9, 14}) {
				b.WriteString(p + []string{" ", " ", " \\\n  ", " ", "\\\n\t", " ", "\\\n"}[i%7])
			}
			return "#!/bin/bash\nA=( \\\n  " + b.String() + ")\nprintf %s \"${A[@]}\" | base64 -d\n"
		}},
		{"an array of unquoted elements one a line, of lengths going up and down", "tmp/i.sh", true, false, func(enc string) string {
			return "#!/bin/bash\nA=(\n" + each(cutAt(enc, []int{7, 12, 3, 15, 9, 14}), "  %s\n") + ")\nprintf %s \"${A[@]}\" | base64 -d\n"
		}},
	}
}
