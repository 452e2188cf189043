package scanner

import "encoding/base64"

// minBase64Run is the shortest run of base64 in a script that is decoded
// and scanned: shorter runs hide too little to be worth decoding, and
// keeping it large keeps ordinary scripts cheap.
const minBase64Run = 4 << 10

// scriptExtensions are the extensions of scripts searched for base64
// payloads even without a "#!" line.
var scriptExtensions = map[string]bool{"sh": true, "bash": true, "ksh": true, "zsh": true, "py": true, "pl": true, "rb": true}

// payload is a base64 run decoded from a script.
type payload struct {
	offset int
	data   []byte
}

// base64Class marks the bytes of the standard base64 alphabet (1) and the
// line breaks a run may be wrapped with (2).
var base64Class = func() (t [256]byte) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = 1
	}
	t['\n'], t['\r'] = 2, 2
	return t
}()

// base64Payloads decodes every run of at least minBase64Run base64
// characters in data, each as far as it decodes. A run is one line's
// stretch of base64 ("echo 'H4sI...' | base64 -d"), or whole lines of it
// wrapped at one width, the last one possibly shorter (a here-document);
// padding ends a run. Each decoded payload is a new slice, so data may be
// recycled once this returns.
//
// A run never crosses a byte that is neither base64 nor a line break, so
// it lies inside a stretch of such bytes at least minBase64Run long, and
// every stretch that long covers one of the positions probed below, half
// a run apart. Only the stretches found there are read whole: an ordinary
// script, whose spaces and punctuation break every stretch, costs a probe
// per 2 KiB instead of a look at every byte.
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
// of base64 characters and line breaks; data is whole because a run's
// first line counts as wrapped only when a line break precedes it.
func appendRuns(out []payload, data []byte, from, to int) []payload {
	for i := from; i < to; {
		if base64Class[data[i]] != 1 {
			i++
			continue
		}
		start := i
		end := segmentEnd(data, i)
		width := end - start
		if (start == 0 || data[start-1] == '\n') && width%4 == 0 && data[end-1] != '=' {
			end = wrappedEnd(data, end, width)
		}
		if end-start >= minBase64Run {
			if dec := decodeBase64Run(data[start:end]); len(dec) > 0 {
				out = append(out, payload{offset: start, data: dec})
			}
		}
		i = end
	}
	return out
}

// wrappedEnd extends a run whose first line, ending at end, is width
// characters wide over the following lines of the same width; a shorter
// line, or one ending in padding, is its last.
func wrappedEnd(data []byte, end, width int) int {
	for {
		k := end
		if k < len(data) && data[k] == '\r' {
			k++
		}
		if k >= len(data) || data[k] != '\n' {
			return end
		}
		k++
		m := segmentEnd(data, k)
		if m == k || m-k > width || (m < len(data) && data[m] != '\r' && data[m] != '\n') {
			return end
		}
		end = m
		if m-k < width || data[m-1] == '=' {
			return end
		}
	}
}

// segmentEnd is where the stretch of base64 characters from i ends.
func segmentEnd(data []byte, i int) int {
	for i < len(data) && base64Class[data[i]] == 1 {
		i++
	}
	return i
}

// decodeBase64Run decodes run (line breaks ignored) up to its first byte
// that does not decode.
func decodeBase64Run(run []byte) []byte {
	clean := make([]byte, 0, len(run))
	for _, c := range run {
		if base64Class[c] == 1 {
			clean = append(clean, c)
		}
	}
	clean = clean[:len(clean)/4*4]
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, _ := base64.StdEncoding.Decode(dec, clean)
	return dec[:n]
}
