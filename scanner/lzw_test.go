package scanner

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
)

// lzwCompress is compress(1) -b maxBits, written again for the tests
// (Debian ships no compress): block mode, codes in groups of eight, the
// rest of a group skipped when the width grows, and CLEAR when the table
// is full, as ncompress writes them.
func lzwCompress(data []byte, maxBits int) []byte {
	w := &lzwWriter{out: []byte{0x1f, 0x9d, byte(0x80 | maxBits)}, nBits: 9, maxCode: 511, maxBits: maxBits, freeEnt: lzwFirst}
	if len(data) == 0 {
		return w.out
	}
	dict := map[int]int{}
	ent := int(data[0])
	for _, c := range data[1:] {
		key := ent<<8 | int(c)
		if code, ok := dict[key]; ok {
			ent = code
			continue
		}
		w.output(ent)
		if w.freeEnt < 1<<maxBits {
			dict[key] = w.freeEnt
			w.freeEnt++
		} else {
			clear(dict)
			w.freeEnt, w.clear = lzwFirst, true
			w.output(lzwClear)
		}
		ent = int(c)
	}
	w.output(ent)
	if w.offset > 0 {
		w.out = append(w.out, w.buf[:(w.offset+7)/8]...)
	}
	return w.out
}

type lzwWriter struct {
	out                             []byte
	buf                             [16]byte
	offset, nBits, maxCode, maxBits int
	freeEnt                         int
	clear                           bool
}

func (w *lzwWriter) output(code int) {
	for i := range w.nBits {
		if code>>i&1 != 0 {
			w.buf[(w.offset+i)>>3] |= 1 << ((w.offset + i) & 7)
		}
	}
	w.offset += w.nBits
	if w.offset == w.nBits*8 {
		w.out = append(w.out, w.buf[:w.nBits]...)
		clear(w.buf[:])
		w.offset = 0
	}
	if w.freeEnt > w.maxCode || w.clear {
		if w.offset > 0 {
			w.out = append(w.out, w.buf[:w.nBits]...)
			clear(w.buf[:])
		}
		w.offset = 0
		switch {
		case w.clear:
			w.nBits, w.maxCode, w.clear = 9, 511, false
		default:
			w.nBits++
			w.maxCode = 1<<w.nBits - 1
			if w.nBits == w.maxBits {
				w.maxCode = 1 << w.maxBits
			}
		}
	}
}

func lzwDecode(t testing.TB, z []byte) ([]byte, error) {
	t.Helper()
	r, err := newLZWReader(bufio.NewReader(bytes.NewReader(z)))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// The decoder gives back what gzip -d does, for inputs that take every
// code width, fill the table and clear it: gzip is the ground truth, and
// the encoder above is checked by it too.
func TestLZWAsGzipReadsIt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	words := [][]byte{[]byte("stratum"), []byte("xmrig "), []byte("\x00\x00\x00\x00"), []byte("donate-level"), {0xff}}
	inputs := [][]byte{nil, []byte("a"), []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), []byte("abababababab")}
	for _, n := range []int{1000, 70000, 400000, 1500000} {
		var b bytes.Buffer
		for b.Len() < n {
			if rng.IntN(4) == 0 {
				b.WriteByte(byte(rng.Uint32()))
			} else {
				b.Write(words[rng.IntN(len(words))])
			}
		}
		inputs = append(inputs, b.Bytes())
	}
	random := make([]byte, 300000) // fills the table fast: CLEAR
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	inputs = append(inputs, random)
	for i, in := range inputs {
		for _, bits := range []int{9, 12, 16} {
			z := lzwCompress(in, bits)
			cmd := exec.Command("gzip", "-dc")
			cmd.Stdin = bytes.NewReader(z)
			want, err := cmd.Output()
			if err != nil || !bytes.Equal(want, in) {
				t.Fatalf("input %d, %d bits: gzip -dc gives %d bytes of %d (%v): the encoder is wrong", i, bits, len(want), len(in), err)
			}
			got, err := lzwDecode(t, z)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("input %d, %d bits: %d bytes of %d, %v", i, bits, len(got), len(in), err)
			}
		}
	}
}

// Hostile streams end with an error or a short result, never a crash.
func FuzzLZW(f *testing.F) {
	f.Add(lzwCompress([]byte("hello hello hello hello"), 16))
	f.Add(lzwCompress(bytes.Repeat([]byte("ab"), 5000), 9))
	f.Add([]byte{0x1f, 0x9d, 0x90, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := newLZWReader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(r, 64<<20))
	})
}
