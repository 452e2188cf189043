package isal

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sample is compressible but not trivial: text with random words.
func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"layer ", "scan ", "miner ", "usr/bin/ ", "\x00\x01", "GLIBC_2.34 ", "0123456789"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(10) == 0 {
			b.WriteByte(byte(r.Uint32()))
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

func inflate(t *testing.T, blob []byte, chunk int) ([]byte, error) {
	t.Helper()
	z, err := NewReader(&chunky{r: bytes.NewReader(blob), n: chunk})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	return io.ReadAll(z)
}

// chunky returns at most n bytes a Read, to exercise refills.
type chunky struct {
	r io.Reader
	n int
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func TestInflateMatchesTheStandardLibrary(t *testing.T) {
	for _, size := range []int{0, 1, 1000, 300 << 10, 3 << 20} {
		data := sample(size)
		for _, chunk := range []int{1 << 30, 4096, 7} {
			if size > 1<<20 && chunk < 100 {
				continue
			}
			got, err := inflate(t, gz(t, data), chunk)
			if err != nil {
				t.Fatalf("size %d chunk %d: %v", size, chunk, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("size %d chunk %d: content differs", size, chunk)
			}
		}
	}
}

func TestConcatenatedMembers(t *testing.T) {
	a, b := sample(5000), sample(70000)
	got, err := inflate(t, append(gz(t, a), gz(t, b)...), 1<<30)
	if err != nil || !bytes.Equal(got, append(a, b...)) {
		t.Fatalf("two members: %v", err)
	}
}

// OnMember is told where each member after the first starts, whatever
// the reads that bring the input in.
func TestMemberStarts(t *testing.T) {
	var blob []byte
	var want []int64
	for i, n := range []int{5000, 70000, 1, 300000, 17} {
		if i > 0 {
			want = append(want, int64(len(blob)))
		}
		blob = append(blob, gz(t, sample(n))...)
	}
	for _, chunk := range []int{1, 7, 4096, 1 << 30} {
		z, err := NewReader(&chunky{r: bytes.NewReader(blob), n: chunk})
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		z.OnMember(func(off int64) { got = append(got, off) })
		if _, err := io.Copy(io.Discard, z); err != nil {
			t.Fatal(err)
		}
		z.Close()
		if !slices.Equal(got, want) {
			t.Errorf("reads of %d: members at %v, want %v", chunk, got, want)
		}
	}
}

func TestCorruptStreams(t *testing.T) {
	good := gz(t, sample(200000))
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0xff
		return b
	}
	cases := map[string][]byte{
		"empty":         {},
		"not gzip":      []byte("plain text, not a gzip stream at all"),
		"truncated":     good[:len(good)/2],
		"no trailer":    good[:len(good)-8],
		"bad crc":       flip(len(good) - 6),
		"bad length":    flip(len(good) - 2),
		"bad data":      flip(len(good) / 2),
		"trailing junk": append(bytes.Clone(good), []byte("junk")...),
	}
	for name, blob := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := inflate(t, blob, 1<<30)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("want ErrCorrupt, got %v", err)
			}
		})
	}
}

func BenchmarkInflate(b *testing.B) {
	data := sample(32 << 20)
	blob := gz(b, data)
	b.Run("isal", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := NewReader(bytes.NewReader(blob))
			if _, err := io.Copy(io.Discard, z); err != nil {
				b.Fatal(err)
			}
			z.Close()
		}
	})
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := kgzip.NewReader(bytes.NewReader(blob))
			if _, err := io.Copy(io.Discard, z); err != nil {
				b.Fatal(err)
			}
		}
	})
}
