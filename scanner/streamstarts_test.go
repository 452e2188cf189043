package scanner

import (
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// everyStart is what streamStarts must find, looked for the slow way:
// every magic at every position of the file.
func everyStart(data []byte, from, text int) []int {
	var offs []int
	for p := range data {
		for _, sm := range streamMagics {
			offs = sm.appendAt(offs, data, p+sm.anchor, from, text)
		}
	}
	slices.Sort(offs)
	return offs
}

// streamMagicsPlanted is data with whole stream headers at random places,
// among bytes drawn from the magics themselves, so that whole magics,
// parts of them and overlapping ones are all common.
func streamMagicsPlanted(rng *rand.Rand, n int, textPrefix bool, gz []byte) []byte {
	var alphabet []byte
	for _, sm := range streamMagics {
		alphabet = append(alphabet, sm.m...)
	}
	alphabet = append(alphabet, 'B', 'Z', 'h', '9', '\n', 'a')
	heads := [][]byte{
		gz,
		append(append([]byte{}, xzMagic...), 0, 4, 0xe6, 0xd6, 0xb4, 0x46),
		append(append([]byte{}, zstdMagic...), 0x24, 0x04, 0x21, 0, 0),
		append([]byte("BZh9"), bzip2Block...),
		{0x1f, 0x9d, 0x90},
		{0x5d, 0, 0, 0x80, 0},
		{0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7},
		{0x02, 0x21, 0x4c, 0x18, 0x10, 0, 0, 0},
		[]byte("LZIP\x01\x0c"),
	}
	var data []byte
	if textPrefix {
		data = append(data, "#!/bin/sh\necho hi\n"...)
	}
	for len(data) < n {
		if rng.IntN(8) == 0 {
			data = append(data, heads[rng.IntN(len(heads))]...)
			continue
		}
		data = append(data, alphabet[rng.IntN(len(alphabet))])
	}
	return data
}

// TestStreamStartsFindsEveryMagic checks the pass over pairs of bytes
// (and the one over the text) against a look at every position: the same
// offsets, on planted headers of every format, behind text and not, and
// on real programs with streams appended.
func TestStreamStartsFindsEveryMagic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	check := func(t *testing.T, data []byte) {
		t.Helper()
		for _, from := range []int{0, 1, 5} {
			// Text ends at the first control byte, or at the first NUL
			// of a script (streamText).
			for _, text := range []int{textEnd(data), streamText(data)} {
				want, got := everyStart(data, from, text), streamStarts(data, from, text)
				if !slices.Equal(got, want) {
					t.Fatalf("from %d, text %d, %d bytes: got %v, want %v", from, text, len(data), got, want)
				}
			}
		}
	}
	gz := gzipBytes(t, []byte("planted"))
	found := 0
	for i := range 3000 {
		data := streamMagicsPlanted(rng, rng.IntN(600), i%2 == 0, gz)
		check(t, data)
		found += len(everyStart(data, 1, textEnd(data)))
	}
	if found < 1000 {
		t.Fatalf("the planted inputs hold %d streams: the test looks at too few", found)
	}
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	for _, tail := range [][]byte{nil, gzipBytes(t, samples.XMRig()), append([]byte("BZh9"), bzip2Block...)} {
		check(t, append(slices.Clip(prog), tail...))
	}
}
