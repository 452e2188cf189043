package scanner

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pullgate/pullgate/internal/samples"
)

func readFill(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(newZstdChecksumFill(bufio.NewReaderSize(bytes.NewReader(b), 16)))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return out
}

// zstdChecksumFill gives a frame cut inside its checksum the zeros it
// lacks, and passes everything else byte for byte: whole frames, frames
// cut elsewhere, skippable frames, frames without a checksum, other data.
func TestZstdChecksumFill(t *testing.T) {
	one := cli(t, samples.XMRig(), "zstd", "-c")                   // with a checksum
	noSum := cli(t, []byte("hello\n"), "zstd", "-c", "--no-check") // without
	skippable := []byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}
	two := append(append(append([]byte{}, one...), skippable...), noSum...)
	for _, whole := range [][]byte{one, noSum, two, append(bytes.Clone(one), one...), []byte("not zstd at all"), nil} {
		if got := readFill(t, whole); !bytes.Equal(got, whole) {
			t.Fatalf("a whole input of %d bytes came out as %d", len(whole), len(got))
		}
		for cut := 1; cut < len(whole); cut++ {
			in := whole[:len(whole)-cut]
			got := readFill(t, in)
			if !bytes.HasPrefix(got, in) || len(got)-len(in) > 4 || bytes.ContainsFunc(got[len(in):], func(r rune) bool { return r != 0 }) {
				t.Fatalf("cut by %d: %d bytes out of %d, not the input and at most 4 zeros", cut, len(got), len(in))
			}
		}
	}
	// Every cut inside the last checksum is filled, and decodes whole.
	for cut := 1; cut <= 4; cut++ {
		got := readFill(t, one[:len(one)-cut])
		if len(got) != len(one) {
			t.Fatalf("cut by %d inside the checksum: %d bytes, want %d", cut, len(got), len(one))
		}
		zr := zstdNestedPool.Get().(*zstd.Decoder)
		if err := zr.Reset(bytes.NewReader(got)); err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		zr.Reset(nil)
		zstdNestedPool.Put(zr)
		if err != nil || !bytes.Equal(plain, samples.XMRig()) {
			t.Fatalf("cut by %d: decoded %d bytes, %v", cut, len(plain), err)
		}
	}
}

func FuzzZstdChecksumFill(f *testing.F) {
	f.Add(cli(f, []byte("hello hello hello\n"), "zstd", "-c"))
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a'})
	f.Add(append(append([]byte{}, zstdMagic...), 0x24, 0x04, 0x21, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := readFill(t, b)
		if !bytes.HasPrefix(got, b) || len(got)-len(b) > 4 {
			t.Fatalf("%d bytes in, %d out", len(b), len(got))
		}
	})
}
