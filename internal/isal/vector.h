// Vector state after ISA-L. isal_inflate's AVX code paths return with the
// upper halves of the YMM/ZMM registers dirty (no vzeroupper). Go's SHA-NI
// and other SSE code use legacy encodings, which on many x86 cores run an
// order of magnitude slower while the upper state is dirty, until
// something clears it: one blob's digest then took seconds. Every return
// from ISA-L into Go goes through pg_clear_upper.
#ifndef PULLGATE_ISAL_VECTOR_H
#define PULLGATE_ISAL_VECTOR_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

// vzeroupper is an AVX instruction: on a CPU without AVX it would fault,
// and there is no upper state to clear.
static int pg_avx = -1;

static inline int pg_has_avx(void) {
	if (pg_avx < 0) {
		unsigned a, b, c, d;
		pg_avx = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_AVX) && (c & bit_OSXSAVE);
	}
	return pg_avx;
}

static inline void pg_clear_upper(void) {
	if (pg_has_avx()) {
		__asm__ volatile("vzeroupper" ::: "memory");
	}
}

// pg_upper_dirty reports the AVX bit of XINUSE (XGETBV with ECX=1): set
// while any YMM upper half is not in its initial state. -1 when the CPU
// cannot say.
static inline int pg_upper_dirty(void) {
	unsigned a, b, c, d;
	if (!pg_has_avx() || !__get_cpuid_count(0xd, 1, &a, &b, &c, &d) || !(a & (1u << 2))) {
		return -1;
	}
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
	return (lo >> 2) & 1;
}

// pg_dirty_upper makes YMM0's upper half non-zero, as ISA-L leaves it.
static inline void pg_dirty_upper(void) {
	if (pg_has_avx()) {
		__asm__ volatile("vpcmpeqb %%ymm0, %%ymm0, %%ymm0" ::: "xmm0", "memory");
	}
}
#else
static inline void pg_clear_upper(void) {}
static inline int pg_upper_dirty(void) { return -1; }
static inline void pg_dirty_upper(void) {}
#endif

#endif
