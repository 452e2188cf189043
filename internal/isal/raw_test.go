package isal

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// writers are compress/flate's writers by level: a new one costs about
// a MiB.
var writers = map[int]*flate.Writer{}

func deflate(t testing.TB, data []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, ok := writers[level]
	if ok {
		w.Reset(&b)
	} else {
		var err error
		if w, err = flate.NewWriter(&b, level); err != nil {
			t.Fatal(err)
		}
		writers[level] = w
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// stdInflate is what compress/flate makes of blob: the reference.
func stdInflate(t testing.TB, blob []byte) []byte {
	t.Helper()
	got, err := io.ReadAll(flate.NewReader(bytes.NewReader(blob)))
	if err != nil {
		t.Fatalf("compress/flate: %v", err)
	}
	return got
}

func rawInflate(t *testing.T, z *Reader, blob []byte, chunk int) ([]byte, error) {
	t.Helper()
	if err := z.Reset(&chunky{r: bytes.NewReader(blob), n: chunk}); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(z)
}

func newRaw(t testing.TB) *Reader {
	t.Helper()
	z, err := NewRawReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	return z
}

// Every level of compress/flate (stored, Huffman only, fixed and dynamic
// blocks), at sizes from nothing to more than both C buffers, read in
// whole and in small pieces through one reused Reader, gives the bytes
// compress/flate gives.
func TestRawMatchesTheStandardLibrary(t *testing.T) {
	z := newRaw(t)
	levels := []int{flate.HuffmanOnly, flate.DefaultCompression, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for _, size := range []int{0, 1, 300, 1000, 70 << 10, 300 << 10, 3 << 20} {
		data := sample(size)
		for _, level := range levels {
			if size > 1<<20 && level != 0 && level != 6 {
				continue // more than both buffers at two levels is enough
			}
			blob := deflate(t, data, level)
			want := stdInflate(t, blob)
			if !bytes.Equal(want, data) {
				t.Fatalf("size %d level %d: compress/flate does not round-trip", size, level)
			}
			for _, chunk := range []int{1 << 30, 4096, 7} {
				if size > 100<<10 && chunk < 100 {
					continue
				}
				got, err := rawInflate(t, z, blob, chunk)
				if err != nil {
					t.Fatalf("size %d level %d chunk %d: %v", size, level, chunk, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("size %d level %d chunk %d: %d bytes differ from compress/flate's %d", size, level, chunk, len(got), len(want))
				}
			}
		}
	}
}

// Thousands of small streams through one Reader, as a jar's members go.
func TestRawManySmallStreams(t *testing.T) {
	z := newRaw(t)
	all := sample(3 << 20)
	for i, off := 0, 0; i < 3000; i++ {
		n := (i*7919)%1500 + i%3 // some empty, most a few hundred bytes
		data := all[off : off+n]
		off = (off + n) % (2 << 20)
		blob := deflate(t, data, i%10)
		got, err := rawInflate(t, z, blob, 1<<30)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("stream %d of %d bytes: %v", i, n, err)
		}
	}
}

// reads records what a source was asked for and gave.
type reads struct {
	r     io.Reader
	asked []int
	given int
}

func (c *reads) Read(p []byte) (int, error) {
	c.asked = append(c.asked, len(p))
	n, err := c.r.Read(p)
	c.given += n
	return n, err
}

// A stream followed by other bytes ends at its final block: the bytes
// after it are neither an error nor read on to the end, and a short
// stream is read in a small first read, not in a buffer's worth.
func TestRawStopsAtTheFinalBlock(t *testing.T) {
	z := newRaw(t)
	for _, size := range []int{10, 1000, 100 << 10} {
		data := sample(size)
		blob := deflate(t, data, 6)
		tail := bytes.Repeat([]byte("after the final block "), 50000)
		src := &reads{r: bytes.NewReader(append(bytes.Clone(blob), tail...))}
		if err := z.Reset(src); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(z)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: %v (%d bytes)", size, err, len(got))
		}
		if src.asked[0] > firstRead {
			t.Fatalf("size %d: first read asked for %d bytes, want at most %d", size, src.asked[0], firstRead)
		}
		if limit := 2*len(blob) + firstRead; src.given > limit {
			t.Fatalf("size %d: read %d bytes of a %d byte stream and its tail, want at most %d", size, src.given, len(blob), limit)
		}
	}
}

func TestRawCorruptStreams(t *testing.T) {
	good := deflate(t, sample(200000), 6)
	stored := deflate(t, sample(1000), 0)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0xff
		return b
	}
	cases := []struct {
		name      string
		blob      []byte
		truncated bool
	}{
		{"empty", nil, true},
		{"one byte of a header", good[:1], true},
		{"cut in half", good[:len(good)/2], true},
		{"last byte missing", good[:len(good)-1], true},
		{"stored block cut", stored[:len(stored)-10], true},
		{"reserved block type", []byte{0x07, 0x00}, false},
		{"stored length check", flip(stored, 3), false},
		{"bad header", flip(good, 0), false},
		{"not deflate", bytes.Repeat([]byte{0xff}, 64), false},
	}
	z := newRaw(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{1 << 30, 3} {
				got, err := rawInflate(t, z, c.blob, chunk)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("chunk %d: want ErrCorrupt, got %v after %d bytes", chunk, err, len(got))
				}
				if c.truncated && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("chunk %d: want io.ErrUnexpectedEOF, got %v", chunk, err)
				}
			}
		})
	}
	// The Reader is whole after them.
	data := sample(5000)
	got, err := rawInflate(t, z, deflate(t, data, 9), 1<<30)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after corrupt streams: %v", err)
	}
}

// A stream with one byte changed is refused where compress/flate refuses
// it, and otherwise gives the bytes compress/flate gives (raw deflate has
// no checksum: what a change makes of it is the format's to say).
func TestRawFlippedBytesAsTheStandardLibrary(t *testing.T) {
	z := newRaw(t)
	var refused, accepted int
	for _, level := range []int{0, 1, 6, 9, flate.HuffmanOnly} {
		good := deflate(t, sample(20000), level)
		for i := 0; i < len(good); i += 1 + len(good)/100 {
			for _, mask := range []byte{0x01, 0x10, 0xff} {
				blob := bytes.Clone(good)
				blob[i] ^= mask
				want, wantErr := io.ReadAll(flate.NewReader(bytes.NewReader(blob)))
				got, err := rawInflate(t, z, blob, 1<<30)
				switch {
				case wantErr != nil && !errors.Is(err, ErrCorrupt):
					t.Fatalf("level %d byte %d ^%#x: compress/flate refuses (%v), got %v", level, i, mask, wantErr, err)
				case wantErr == nil && (err != nil || !bytes.Equal(got, want)):
					t.Fatalf("level %d byte %d ^%#x: compress/flate accepts %d bytes, got %d and %v", level, i, mask, len(want), len(got), err)
				case wantErr != nil:
					refused++
				default:
					accepted++
				}
			}
		}
	}
	if refused == 0 || accepted == 0 {
		t.Fatalf("%d refused, %d accepted: the cases do not cover both", refused, accepted)
	}
}

// A Reader reset in the middle of a stream reads the next one from its
// start; a closed one refuses to be reset or read.
func TestRawResetAndClose(t *testing.T) {
	z, err := NewRawReader(bytes.NewReader(deflate(t, sample(2<<20), 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(z, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	data := sample(3000)
	if got, err := rawInflate(t, z, deflate(t, data, 5), 1<<30); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a reset mid-stream: %v", err)
	}
	z.Close()
	z.Close()
	if err := z.Reset(bytes.NewReader(nil)); err == nil {
		t.Fatal("a closed Reader was reset")
	}
	if _, err := z.Read(make([]byte, 1)); err == nil {
		t.Fatal("a closed Reader was read")
	}
}

// A source's own error is returned as it is, not as corruption.
func TestRawSourceError(t *testing.T) {
	boom := errors.New("disk gone")
	z := newRaw(t)
	blob := deflate(t, sample(100000), 6)
	if err := z.Reset(io.MultiReader(bytes.NewReader(blob[:100]), &failing{boom})); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(z); !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want the source's error", err)
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

// The last bytes of a raw stream come with io.EOF, as compress/flate
// gives them, so a caller reading exactly the stream's length (archive/zip
// for its CRC-32) sees the end.
func TestRawEOFWithTheLastBytes(t *testing.T) {
	z := newRaw(t)
	for _, size := range []int{1, 5000, 700 << 10} {
		data := sample(size)
		if err := z.Reset(bytes.NewReader(deflate(t, data, 6))); err != nil {
			t.Fatal(err)
		}
		var got []byte
		var err error
		buf := make([]byte, 64<<10)
		for err == nil {
			var n int
			n, err = z.Read(buf)
			got = append(got, buf[:n]...)
			if err == nil && len(got) == size {
				t.Fatalf("size %d: all bytes read without io.EOF", size)
			}
		}
		if err != io.EOF || !bytes.Equal(got, data) {
			t.Fatalf("size %d: %v after %d bytes", size, err, len(got))
		}
	}
}

// Close frees a Reader's C memory once, however often it is called, and
// a Reader dropped without Close frees it when collected.
func TestReaderCMemoryFreed(t *testing.T) {
	before := Live()
	z, err := NewRawReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	if Live() != before+1 {
		t.Fatalf("Live %d after a new Reader, want %d", Live(), before+1)
	}
	z.Close()
	z.Close()
	if Live() != before {
		t.Fatalf("Live %d after Close twice, want %d", Live(), before)
	}
	for i := 0; i < 3; i++ {
		if _, err := NewRawReader(nil); err != nil {
			t.Fatal(err)
		}
	}
	testsync.WaitFor(t, 30*time.Second, "dropped Readers' C memory freed", func() bool {
		runtime.GC()
		return Live() == before
	})
}
