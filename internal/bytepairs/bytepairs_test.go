package bytepairs

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// naive is what Each must find: every position of every pair, in order.
func naive(data []byte, pairs [][2]byte) []int {
	var out []int
	for i := 0; i+1 < len(data); i++ {
		for _, p := range pairs {
			if data[i] == p[0] && data[i+1] == p[1] {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

func each(s Set, data []byte) []int {
	var got []int
	s.Each(data, func(i int) { got = append(got, i) })
	return got
}

// bothPaths runs f with the AVX2 path and with the scalar one.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	was := setAVX2(true)
	defer setAVX2(was)
	t.Run("avx2", f)
	setAVX2(false)
	t.Run("scalar", f)
}

func TestEachFindsEveryPair(t *testing.T) {
	pairs := [][2]byte{{0x1f, 0x8b}, {0xfd, 0x37}, {0x28, 0xb5}, {'Y', '&'}}
	s := NewSet(pairs...)
	bothPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for n := range 300 {
			for range 20 {
				data := make([]byte, n)
				// Bytes of the pairs only, so pairs, near misses and
				// pairs that overlap or cross a 32-byte step are common.
				alphabet := []byte{0x1f, 0x8b, 0xfd, 0x37, 0x28, 0xb5, 'Y', '&', 0}
				for i := range data {
					data[i] = alphabet[rng.IntN(len(alphabet))]
				}
				if want, got := naive(data, pairs), each(s, data); !slices.Equal(want, got) {
					t.Fatalf("n=%d %x: got %v, want %v", n, data, got, want)
				}
			}
		}
	})
}

func TestEachPastOneBatch(t *testing.T) {
	// More positions than one C call hands back, crossing a batch at
	// every offset of a 32-byte step.
	s := NewSet([2]byte{'a', 'a'})
	bothPaths(t, func(t *testing.T) {
		for pad := range 40 {
			data := make([]byte, pad+3*batch+7)
			for i := pad; i < len(data); i++ {
				data[i] = 'a'
			}
			want := naive(data, [][2]byte{{'a', 'a'}})
			if got := each(s, data); !slices.Equal(want, got) {
				t.Fatalf("pad %d: %d positions, want %d", pad, len(got), len(want))
			}
		}
	})
}

func TestEachLastPositions(t *testing.T) {
	// A pair in the last two bytes, after a whole vector and not.
	s := NewSet([2]byte{0x1f, 0x8b}, [2]byte{0xfd, 0x37})
	bothPaths(t, func(t *testing.T) {
		for n := 2; n < 130; n++ {
			data := make([]byte, n)
			data[n-2], data[n-1] = 0xfd, 0x37
			if got := each(s, data); !slices.Equal(got, []int{n - 2}) {
				t.Fatalf("n=%d: got %v", n, got)
			}
			if got := each(s, data[:n-1]); len(got) != 0 {
				t.Fatalf("n=%d cut: got %v", n, got)
			}
		}
	})
}

func TestNewSetRepeatsLastPair(t *testing.T) {
	s := NewSet([2]byte{1, 2})
	if s.first != [4]byte{1, 1, 1, 1} || s.second != [4]byte{2, 2, 2, 2} {
		t.Fatalf("set %+v", s)
	}
	for _, n := range []int{0, 5} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewSet of %d pairs did not panic", n)
				}
			}()
			NewSet(make([][2]byte, n)...)
		}()
	}
}

func BenchmarkEach(b *testing.B) {
	data := make([]byte, 16<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	s := NewSet([2]byte{0x1f, 0x8b}, [2]byte{0xfd, 0x37}, [2]byte{0x28, 0xb5}, [2]byte{'Y', '&'})
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s.Each(data, func(int) {})
	}
}
