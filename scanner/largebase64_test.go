package scanner

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"testing"
)

// basencRun reads base64 broken up as the forms it passes over break it
// (white space, quotes, \n escapes, each group padded on its own) as
// encoding/base64 reads the plain text, and stops at the first other
// byte; hostile input ends, with what it decoded, and never panics.
func FuzzBase64Run(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{3, 0, 7}, uint8(0))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6}, []byte{1, 1, 1, 1}, uint8(1))
	f.Add([]byte("a"), []byte{}, uint8(2))
	f.Fuzz(func(t *testing.T, payload, breaks []byte, form uint8) {
		enc := []byte(base64.StdEncoding.EncodeToString(payload))
		seps := []string{"\n", "\t", " ", "\"\n\"", "\\n", "\r\n", "'"}
		var text []byte
		for i, c := range enc {
			if len(breaks) > 0 && breaks[i%len(breaks)]%5 == 0 && c != '=' {
				text = append(text, seps[int(breaks[i%len(breaks)]/5)%len(seps)]...)
			}
			text = append(text, c)
		}
		if form%2 == 1 {
			// Each two bytes encoded and padded on their own,
			// as GNU base64 -d reads them one after another.
			text = nil
			for p := payload; len(p) > 0; p = p[min(len(p), 2):] {
				text = append(text, base64.StdEncoding.EncodeToString(p[:min(len(p), 2)])...)
				text = append(text, '\n')
			}
		}
		text = append(text, '}', 'x', 'x', 'x', 'x')
		run := newBasencRun(bufio.NewReader(bytes.NewReader(text)), urlBase64, 0)
		got, err := io.ReadAll(run)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("decoded %q (%v) from %q, want %q", got, err, text, payload)
		}
		if want := int64(len(text) - 4); run.n != want {
			t.Fatalf("read %d bytes of the text, want %d (to its end)", run.n, want)
		}
		// Anything at all, at any alignment.
		for skip := range 4 {
			io.ReadAll(newBasencRun(bufio.NewReader(bytes.NewReader(append(breaks, payload...))), urlBase64, skip))
		}
	})
}
