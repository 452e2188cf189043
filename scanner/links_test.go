package scanner

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestLinkRingKeepsRecentContent writes files of every size class through
// the ring (within a chunk, across chunks, across the wrap, as large as the
// ring) and checks that each entry still in the ring reads back exactly and
// that each overwritten one says so.
func TestLinkRingKeepsRecentContent(t *testing.T) {
	for _, max := range []int64{1000, ringChunk, ringChunk*5/2 + 7} {
		s := newLinkStore(max)
		rng := rand.New(rand.NewPCG(1, uint64(max)))
		type kept struct {
			e    *linkEntry
			data []byte
		}
		var files []kept
		for i := range 200 {
			size := rng.Int64N(max/3 + 1)
			switch i % 10 {
			case 0:
				size = 0
			case 1:
				size = max
			case 2:
				size = max + 1
			}
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			w, start, ok := s.keep(size)
			if ok != (size <= max) {
				t.Fatalf("max %d: keep(%d) = %v", max, size, ok)
			}
			e := &linkEntry{start: start, size: size, kept: ok}
			if ok {
				// in pieces, as a file's content reaches the ring
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(70000))
					if _, err := w.Write(rest[:n]); err != nil {
						t.Fatal(err)
					}
					rest = rest[n:]
				}
			}
			files = append(files, kept{e, data})
			for _, f := range files {
				r, ok := s.content(f.e)
				inRing := f.e.kept && s.written-f.e.start <= max
				if ok != inRing {
					t.Fatalf("max %d: content of an entry at %d (size %d) after %d written: %v, want %v", max, f.e.start, f.e.size, s.written, ok, inRing)
				}
				if !ok {
					continue
				}
				got, _ := io.ReadAll(r)
				if !bytes.Equal(got, f.data) {
					t.Fatalf("max %d: an entry at %d (size %d) read back %d different bytes", max, f.e.start, f.e.size, len(got))
				}
			}
			if len(files) > 8 {
				files = files[1:]
			}
		}
		s.release()
	}
}
