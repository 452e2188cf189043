package scanner

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/pullgate/pullgate/internal/samples"
)

// What a readAhead hands over is the source's bytes in order, then the
// source's own error, whatever the read sizes on either side.
func TestReadAheadKeepsBytesAndError(t *testing.T) {
	data := samples.Filler(3*readAheadChunk + 12345)
	failed := errors.New("source failed")
	cases := []struct {
		name    string
		src     io.Reader
		want    []byte
		wantErr error
	}{
		{"whole", bytes.NewReader(data), data, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:70000])), data[:70000], nil},
		{"data then an error", iotest.TimeoutReader(bytes.NewReader(data)), nil, iotest.ErrTimeout},
		{"truncated stream", io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(io.ErrUnexpectedEOF)), data[:5000], io.ErrUnexpectedEOF},
		{"failure after chunks", io.MultiReader(bytes.NewReader(data), iotest.ErrReader(failed)), data, failed},
		{"empty", bytes.NewReader(nil), nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ra := newReadAhead(c.src)
			defer ra.close()
			got, err := io.ReadAll(iotest.HalfReader(ra))
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if c.want != nil && !bytes.Equal(got, c.want) {
				t.Fatalf("read %d bytes, not the source's %d", len(got), len(c.want))
			}
		})
	}
}

// Closing a readAhead whose reader stopped early ends its goroutine.
func TestReadAheadCloseEarly(t *testing.T) {
	src := &countingReader{r: bytes.NewReader(samples.Filler(64 * readAheadChunk))}
	ra := newReadAhead(src)
	if _, err := io.ReadFull(ra, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	ra.close()
	// The goroutine stopped at its buffers: it read at most the chunks it
	// could hold, not the whole source.
	if max := int64((readAheadChunks + 1) * readAheadChunk); src.n > max {
		t.Fatalf("read %d bytes of the source after an early close, more than %d", src.n, max)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
