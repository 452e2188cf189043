package scanner

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

// minBase64Run is the shortest run of base64 in a script that is decoded
// and scanned: shorter runs hide too little to be worth decoding, and
// keeping it large keeps ordinary scripts cheap.
const minBase64Run = 4 << 10

// scriptExtensions are the extensions of scripts searched for base64
// payloads even without a "#!" line.
var scriptExtensions = map[string]bool{"sh": true, "bash": true, "ksh": true, "zsh": true, "py": true, "pl": true, "rb": true}

// payload is a base64 run decoded from a script, skip characters into it.
type payload struct {
	offset int
	skip   int
	data   []byte
}

// name is how findings name the payload inside its script.
func (p payload) name() string {
	if p.skip == 0 {
		return fmt.Sprintf("base64@%d", p.offset)
	}
	return fmt.Sprintf("base64@%d+%d", p.offset, p.skip)
}

// base64Class marks the bytes of the standard base64 alphabet (1), the
// line breaks a run may be wrapped with (2), and the quotes of an empty
// pair a shell joins away inside one ("AAAA""BBBB") (3).
var base64Class = func() (t [256]byte) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = 1
	}
	t['\n'], t['\r'] = 2, 2
	t['"'], t['\''] = 3, 3
	return t
}()

// base64Payloads decodes every run of at least minBase64Run base64
// characters in data, as far as each decodes. A run is a stretch of base64
// (ended by padding: "=" is only ever last, so "P=QUJD..." starts a run
// after it), carried on over empty quote pairs and over whole lines (a
// here-document, or a quoted value over lines, at any width: base64 -d
// ignores line breaks); a line that goes on with something else is its
// last. What a script puts around the payload may shift it against
// base64's groups of four ("sh" before a here-document's first line joins
// the run, a split at any place rejoins one), so each run is decoded at
// the four alignments, each scanned. Each decoded payload is a new slice,
// so data may be recycled once this returns.
//
// A run never crosses a byte that is none of these, so it lies inside a
// stretch of them at least minBase64Run long, and every stretch that long
// covers one of the positions probed below, half a run apart. Only the
// stretches found there are read whole: an ordinary script, whose spaces
// and punctuation break every stretch, costs a probe per 2 KiB instead of
// a look at every byte.
func base64Payloads(data []byte) []payload {
	const step = minBase64Run / 2
	var out []payload
	done := 0 // data[:done] is searched
	for p := step - 1; p < len(data); p += step {
		if p < done || base64Class[data[p]] == 0 {
			continue
		}
		s, e := p, p+1
		for s > done && base64Class[data[s-1]] != 0 {
			s--
		}
		for e < len(data) && base64Class[data[e]] != 0 {
			e++
		}
		if e-s >= minBase64Run {
			out = appendRuns(out, data, s, e)
		}
		done = e
	}
	return out
}

// appendRuns appends the payloads of the runs in data[from:to], a stretch
// of base64 characters, line breaks and quotes.
func appendRuns(out []payload, data []byte, from, to int) []payload {
	for i := from; i < to; {
		if base64Class[data[i]] != 1 {
			i++
			continue
		}
		start := i
		end := wrappedEnd(data, start, segmentEnd(data, i))
		if end-start >= minBase64Run {
			for skip := range 4 {
				if dec := decodeBase64Run(data[start:end], skip); len(dec) > 0 {
					out = append(out, payload{offset: start, skip: skip, data: dec})
				}
			}
		}
		i = end
	}
	return out
}

// wrappedEnd carries a run from start, whose first stretch ends at end,
// over the lines that follow while each is base64 to its line break, as a
// wrapped block is: at one width, its last line shorter (a longer line is
// not part of it). A line that goes on with something else (a closing
// quote) is the run's last, and so is one that ends in padding. Only a
// run that starts a line, a quoted string or an assignment is carried on:
// a word before a here-document ("| sh") is not the payload's start.
func wrappedEnd(data []byte, start, end int) int {
	if start > 0 && !bytes.ContainsRune([]byte("\n\"'="), rune(data[start-1])) {
		return end
	}
	width := -1
	for data[end-1] != '=' {
		k := end
		if k < len(data) && data[k] == '\r' {
			k++
		}
		if k >= len(data) || data[k] != '\n' {
			return end
		}
		k++
		m := segmentEnd(data, k)
		w := m - k
		if w == 0 || (width >= 0 && w > width) {
			return end
		}
		end = m
		if (m < len(data) && data[m] != '\r' && data[m] != '\n') || (width >= 0 && w < width) {
			return end
		}
		width = w
	}
	return end
}

// segmentEnd is where the stretch of base64 characters from i ends: at a
// byte that is not one, or after padding. An empty pair of quotes between
// base64 characters is taken as part of it.
func segmentEnd(data []byte, i int) int {
	for i < len(data) {
		switch c := data[i]; {
		case c == '=':
			for i < len(data) && data[i] == '=' {
				i++
			}
			return i
		case base64Class[c] == 1:
			i++
		case base64Class[c] == 3 && i+2 < len(data) && data[i+1] == c && base64Class[data[i+2]] == 1 && data[i+2] != '=':
			i += 2
		default:
			return i
		}
	}
	return i
}

// decodeBase64Run decodes run (line breaks and quotes ignored) from its
// skip-th base64 character, up to its first group that does not decode.
func decodeBase64Run(run []byte, skip int) []byte {
	clean := make([]byte, 0, len(run))
	for _, c := range run {
		if base64Class[c] == 1 {
			clean = append(clean, c)
		}
	}
	if skip >= len(clean) {
		return nil
	}
	clean = clean[skip:]
	clean = clean[:len(clean)/4*4]
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, _ := base64.StdEncoding.Decode(dec, clean)
	return dec[:n]
}
