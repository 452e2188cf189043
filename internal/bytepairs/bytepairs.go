package bytepairs

/*
#include <stdint.h>
#include <stddef.h>

#if defined(__x86_64__)
#include <immintrin.h>

static int pg_avx2 = -1;

static int pg_has_avx2(void) {
	if (pg_avx2 < 0) {
		__builtin_cpu_init();
		pg_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
	}
	return pg_avx2;
}

// pg_pairs_avx2 compares 32 positions with all four pairs per step. It
// stops before the last 32 bytes, which the scalar loop finishes. gcc ends
// the function with vzeroupper, so no dirty upper state reaches Go.
__attribute__((target("avx2")))
static size_t pg_pairs_avx2(const uint8_t *d, size_t i, size_t n, const uint8_t *a, const uint8_t *b,
                            int64_t *out, size_t cap, size_t *k) {
	__m256i a0 = _mm256_set1_epi8((char)a[0]), b0 = _mm256_set1_epi8((char)b[0]);
	__m256i a1 = _mm256_set1_epi8((char)a[1]), b1 = _mm256_set1_epi8((char)b[1]);
	__m256i a2 = _mm256_set1_epi8((char)a[2]), b2 = _mm256_set1_epi8((char)b[2]);
	__m256i a3 = _mm256_set1_epi8((char)a[3]), b3 = _mm256_set1_epi8((char)b[3]);
	for (; i + 33 <= n; i += 32) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(d + i));
		__m256i y = _mm256_loadu_si256((const __m256i *)(d + i + 1));
		__m256i m = _mm256_and_si256(_mm256_cmpeq_epi8(x, a0), _mm256_cmpeq_epi8(y, b0));
		m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(x, a1), _mm256_cmpeq_epi8(y, b1)));
		m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(x, a2), _mm256_cmpeq_epi8(y, b2)));
		m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(x, a3), _mm256_cmpeq_epi8(y, b3)));
		uint32_t mask = (uint32_t)_mm256_movemask_epi8(m);
		while (mask != 0) {
			if (*k == cap) {
				return i + (size_t)__builtin_ctz(mask);
			}
			out[(*k)++] = (int64_t)(i + (size_t)__builtin_ctz(mask));
			mask &= mask - 1;
		}
	}
	return i;
}

#endif

// pg_set_avx2 lets the tests take the scalar path on any CPU; it returns
// whether AVX2 was in use.
static int pg_set_avx2(int on) {
#if defined(__x86_64__)
	int was = pg_has_avx2();
	pg_avx2 = on && __builtin_cpu_supports("avx2");
	return was;
#else
	return 0;
#endif
}

// pg_pairs writes to out, in order, the positions i from i on where
// d[i] == a[j] and d[i+1] == b[j] for some j < 4, until it has cap of
// them; it sets *k to how many it wrote and returns where it stopped (n
// when it looked at every position).
static size_t pg_pairs(const uint8_t *d, size_t i, size_t n, const uint8_t *a, const uint8_t *b,
                       int64_t *out, size_t cap, size_t *k) {
	*k = 0;
#if defined(__x86_64__)
	if (pg_has_avx2()) {
		i = pg_pairs_avx2(d, i, n, a, b, out, cap, k);
	}
#endif
	for (; i + 1 < n; i++) {
		uint8_t x = d[i], y = d[i + 1];
		if ((x == a[0] && y == b[0]) || (x == a[1] && y == b[1]) ||
		    (x == a[2] && y == b[2]) || (x == a[3] && y == b[3])) {
			if (*k == cap) {
				return i;
			}
			out[(*k)++] = (int64_t)i;
		}
	}
	return n;
}
*/
import "C"

import "unsafe"

// Set is up to four pairs of bytes looked for together.
type Set struct {
	first, second [4]byte
}

// NewSet returns the set of pairs. It panics on none or more than four:
// the set is a constant of its caller.
func NewSet(pairs ...[2]byte) Set {
	if len(pairs) == 0 || len(pairs) > 4 {
		panic("bytepairs: one to four pairs")
	}
	var s Set
	for j := range 4 {
		p := pairs[min(j, len(pairs)-1)] // unused slots repeat the last pair
		s.first[j], s.second[j] = p[0], p[1]
	}
	return s
}

// batch is how many positions one C call hands back.
const batch = 256

// setAVX2 turns the AVX2 path on or off (where the CPU has it) and says
// whether it was on: the tests run both paths.
func setAVX2(on bool) bool {
	v := 0
	if on {
		v = 1
	}
	return C.pg_set_avx2(C.int(v)) != 0
}

// Each calls found, in order, with every position i where data[i] and
// data[i+1] are one of s's pairs.
func (s *Set) Each(data []byte, found func(i int)) {
	if len(data) < 2 {
		return
	}
	var out [batch]int64
	for i := 0; i < len(data); {
		var k C.size_t
		next := C.pg_pairs((*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(i), C.size_t(len(data)),
			(*C.uint8_t)(unsafe.Pointer(&s.first[0])), (*C.uint8_t)(unsafe.Pointer(&s.second[0])),
			(*C.int64_t)(unsafe.Pointer(&out[0])), batch, &k)
		for _, p := range out[:k] {
			found(int(p))
		}
		i = int(next)
	}
}
