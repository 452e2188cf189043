package isal

import (
	"bufio"
	"bytes"
	"compress/flate"
	"io"
	"math/rand/v2"
	"testing"
)

// stdUsed is how many bytes of blob compress/flate uses to inflate the
// stream at its start: reading through a bufio.Reader (an io.ByteReader),
// it reads exactly to the stream's end and no further.
func stdUsed(t *testing.T, blob []byte) int64 {
	t.Helper()
	src := bytes.NewReader(blob)
	br := bufio.NewReader(src)
	if _, err := io.Copy(io.Discard, flate.NewReader(br)); err != nil {
		t.Fatalf("compress/flate: %v", err)
	}
	return int64(len(blob)-src.Len()) - int64(br.Buffered())
}

// InputUsed finds where a raw stream ends, as compress/flate does, over
// streams of every level and size, read in chunks of several sizes, with
// bytes after the stream that look like more data.
func TestInputUsedMatchesTheStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	z := newRaw(t)
	defer z.Close()
	for i := 0; i < 300; i++ {
		size := []int{0, 1, 5, 100, 1000, 40 << 10, 300 << 10}[i%7]
		data := sample(size + i)
		if i%3 == 0 {
			data = make([]byte, size+i) // runs: short codes, a few bits per block
			for j := range data {
				data[j] = byte(rng.IntN(3))
			}
		}
		level := []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly}[i%5]
		stream := deflate(t, data, level)
		after := make([]byte, 1+rng.IntN(9000))
		for j := range after {
			after[j] = byte(rng.Uint32())
		}
		blob := append(bytes.Clone(stream), after...)
		want := stdUsed(t, blob)
		if want != int64(len(stream)) {
			t.Fatalf("stream %d: compress/flate used %d bytes of a %d-byte stream", i, want, len(stream))
		}
		for _, chunk := range []int{1 << 30, 4096, 13, 1} {
			if chunk == 1 && size > 40<<10 {
				continue
			}
			got, err := rawInflate(t, z, blob, chunk)
			if err != nil {
				t.Fatalf("stream %d (level %d, %d bytes, chunk %d): %v", i, level, len(data), chunk, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("stream %d: inflated to other bytes", i)
			}
			if used := z.InputUsed(); used != want {
				t.Fatalf("stream %d (level %d, %d bytes, chunk %d): InputUsed %d, compress/flate used %d", i, level, len(data), chunk, used, want)
			}
		}
	}
}
