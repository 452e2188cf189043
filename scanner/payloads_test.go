package scanner

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// everyBytePayloads is the search as it reads when it looks at every
// byte of the file, piece after piece from the first: the reference the
// probing search must agree with.
func everyBytePayloads(data []byte) []payload {
	var out []payload
	for i := 0; ; {
		first, ok := nextPiece(data, i, len(data))
		if !ok {
			return appendHexPayloads(out, data) // found by their own triggers
		}
		out, i = appendChainOf(out, data, first, true)
	}
}

// scriptAround builds a script with base64 runs of the given lengths,
// each on one line or wrapped at width, between ordinary lines, placed so
// that runs start and end on both sides of the probed positions.
func scriptAround(rng *rand.Rand, lengths []int, width int) []byte {
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n")
	for _, n := range lengths {
		b.WriteString(strings.Repeat("x", rng.IntN(3000)) + " # pad\n")
		raw := make([]byte, n*3/4+3)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(raw)[:n]
		if width <= 0 {
			fmt.Fprintf(&b, "echo '%s' | base64 -d | sh\n", enc)
			continue
		}
		b.WriteString("base64 -d <<E | sh\n")
		for len(enc) > 0 {
			k := min(width, len(enc))
			b.WriteString(enc[:k] + "\n")
			enc = enc[k:]
		}
		b.WriteString("E\n")
	}
	return b.Bytes()
}

func samePayloads(t *testing.T, data []byte) {
	t.Helper()
	got, want := base64Payloads(data), everyBytePayloads(data)
	if len(got) != len(want) {
		t.Fatalf("%d payloads, the every-byte search finds %d", len(got), len(want))
	}
	for i := range got {
		if got[i].name(0) != want[i].name(0) || !bytes.Equal(got[i].decode(), want[i].decode()) {
			t.Fatalf("payload %d at %d (%d bytes), the every-byte search has it at %d (%d bytes)",
				i, got[i].offset, len(got[i].decode()), want[i].offset, len(want[i].decode()))
		}
	}
}

// The probing search finds exactly what a look at every byte finds: runs
// just under, at and over the minimum, on one line and wrapped, at and
// around the probe spacing, at the start and the end of the data.
func TestBase64PayloadsProbeAsEveryByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{minBase64Run - 4, minBase64Run, minBase64Run + 4, minBase64Run/2 + 8, 3 * minBase64Run, 20000}
	for _, width := range []int{0, 64, 76, 4096} {
		for round := range 20 {
			t.Run(fmt.Sprintf("width=%d/round=%d", width, round), func(t *testing.T) {
				rng.Shuffle(len(lengths), func(i, j int) { lengths[i], lengths[j] = lengths[j], lengths[i] })
				chosen := lengths[:1+round%len(lengths)]
				data := scriptAround(rng, chosen, width)
				samePayloads(t, data)
				if len(everyBytePayloads(data)) == 0 && slices.Max(chosen) >= minBase64Run {
					t.Fatal("no payload in a script built with runs over the minimum: the test proves nothing")
				}
			})
		}
	}
	// A run that is the whole data, and one that ends it without a line break.
	enc := []byte(base64.StdEncoding.EncodeToString(samples.Filler(6000)))
	samePayloads(t, enc)
	samePayloads(t, append([]byte("x "), enc...))
	if got := base64Payloads(enc); len(got) != 4 || got[0].skip != 0 {
		t.Fatal("a run that is the whole data is not found")
	}
}

func FuzzBase64Payloads(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	f.Add(scriptAround(rng, []int{minBase64Run}, 0))
	f.Add(scriptAround(rng, []int{minBase64Run + 100, 5000}, 76))
	f.Add([]byte(strings.Repeat("QUJD", minBase64Run/4)))
	f.Add([]byte(strings.Repeat("QUJDRA==\n", 600)))
	// Payloads in pieces, as scripts and programs join them.
	enc := base64.StdEncoding.EncodeToString(samples.Filler(5000))
	for _, jf := range joinForms() {
		f.Add([]byte(jf.text(enc)))
	}
	for _, ef := range escapeForms() {
		f.Add([]byte(ef.text(enc)))
	}
	f.Add([]byte("A=(\n" + each(cutAt(enc, []int{15, 3, 40}), "%s \n")[:6000] + ")\nB=(x y\nz)\n" + enc[:5000]))
	for _, size := range []int{56, 3001} {
		f.Add([]byte(paddedChunks(samples.Filler(9000), size)))
	}
	// Arrays with comments, continued lines and appends among their
	// elements, and with the gaps that end their chains.
	for _, rarity := range []int{3, 30} {
		f.Add(randomArray(rng, enc, rarity))
	}
	f.Add([]byte(shellWordArrays))
	// Hex and byte escapes (see payloadhex.go).
	filler := samples.Filler(3000)
	f.Add([]byte("xxd -r -p <<'EOF'\n" + hexLines(filler, 60, false) + "EOF\n"))
	f.Add([]byte(spacedHex(filler, ":", 16)))
	f.Add([]byte(spacedDigits(filler, " ", 3, 20)))
	f.Add([]byte(cArray(filler)))
	f.Add([]byte(escapeLines(filler, 64, "printf", "k", func(c byte) string { return fmt.Sprintf(`\x%02x`, c) })))
	f.Add([]byte(escapeLines(filler, 64, "echo -ne", "k", func(c byte) string { return fmt.Sprintf(`\0%03o`, c) })))
	f.Add([]byte("open('k', 'wb').write(" + pyRepr(filler) + ")\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		samePayloads(t, data)
	})
}

// How scripts carry a payload that base64 -d (or a shell that joins the
// pieces first) decodes, each found whole: an unquoted assignment, a
// here-document wrapped at widths that are not a multiple of four, with
// CRLF, a quoted value over lines, and a run split by an empty pair of
// quotes at an odd place. Scanned in a layer, each is refused.
func TestBase64PayloadsAsScriptsCarryThem(t *testing.T) {
	miner := append(samples.XMRig(), samples.Filler(4000)...)
	enc := base64.StdEncoding.EncodeToString(miner)
	wrap := func(w int, eol string) string {
		var b strings.Builder
		for s := enc; len(s) > 0; {
			n := min(w, len(s))
			b.WriteString(s[:n] + eol)
			s = s[n:]
		}
		return b.String()
	}
	cases := []struct{ name, script string }{
		{"unquoted assignment", "#!/bin/sh\nP=" + enc + "\necho \"$P\" | base64 -d > /tmp/x\n"},
		{"here-document at 61", "#!/bin/sh\nbase64 -d <<E | sh\n" + wrap(61, "\n") + "E\n"},
		{"here-document at 61 with CRLF", "#!/bin/sh\r\nbase64 -d <<E | sh\r\n" + wrap(61, "\r\n") + "E\r\n"},
		{"here-document at 5", "#!/bin/sh\nbase64 -d <<E | sh\n" + wrap(5, "\n") + "E\n"},
		{"here-document at 4097", "#!/bin/sh\nbase64 -d <<E | sh\n" + wrap(4097, "\n") + "E\n"},
		{"quoted value over lines", "#!/bin/sh\nP='" + strings.TrimSuffix(wrap(76, "\n"), "\n") + "'\necho \"$P\" | base64 -d | sh\n"},
		{"split by an empty pair of quotes", "#!/bin/sh\necho \"" + enc[:4097] + "\"\"" + enc[4097:] + "\" | base64 -d | sh\n"},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			found := false
			for _, p := range base64Payloads([]byte(c.script)) {
				found = found || bytes.Contains(p.decode(), miner)
			}
			if !found {
				t.Fatal("no payload decodes to the script's payload")
			}
			res, err := scanOne(t, s, tfile{name: "usr/local/bin/setup.sh", mode: 0o755, data: []byte(c.script)})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := findingOf(res.Findings, "MinerXMRig"); !ok {
				t.Fatalf("findings %+v: the miner in the payload was not found", res.Findings)
			}
		})
	}
}

// decode returns the payload's bytes, a new slice.
func (p payload) decode() []byte { return p.decodeInto(nil) }
