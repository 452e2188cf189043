package isal

/*
#include <stdlib.h>
#include <isa-l/igzip_lib.h>
#include "vector.h"

// Each probe runs in one C call, so no Go code (whose memmove clears the
// state as a side effect) runs on the thread between the step and the
// look at the vector state.
static int pg_dirty_then_look(void) { pg_dirty_upper(); return pg_upper_dirty(); }
static int pg_dirty_clear_look(void) { pg_dirty_upper(); pg_clear_upper(); return pg_upper_dirty(); }

extern int (*pg_isal_inflate)(struct inflate_state *);

// pg_inflate_dirty is isal_inflate as it behaves on CPUs where it takes
// its AVX-512 paths: it returns with the upper state dirty. (Here glibc's
// memcpy, called inside, may happen to clear it.)
static int pg_inflate_dirty(struct inflate_state *s) {
	int ret = isal_inflate(s);
	pg_dirty_upper();
	return ret;
}

int pg_inflate(struct inflate_state *s, uint8_t *in, uint32_t in_len, uint32_t *in_used,
               uint8_t *out, uint32_t out_len, uint32_t *out_made, int *finished, int *held);

// pg_inflate_then_look inflates in into out with the reader's own step
// and reports the vector state as the step left it, with ISA-L standing
// in as it behaves where it leaves the state dirty. Not safe to run
// beside a real inflate: tests only.
static int pg_inflate_then_look(uint8_t *in, uint32_t in_len, uint8_t *out, uint32_t out_len) {
	struct inflate_state *s = malloc(sizeof(*s));
	if (s == NULL) {
		return -2;
	}
	isal_inflate_init(s);
	s->crc_flag = ISAL_GZIP;
	uint32_t used, made;
	int fin, held;
	int (*real)(struct inflate_state *) = pg_isal_inflate;
	pg_isal_inflate = pg_inflate_dirty;
	int ret = pg_inflate(s, in, in_len, &used, out, out_len, &made, &fin, &held);
	int look = pg_upper_dirty();
	pg_isal_inflate = real;
	free(s);
	return ret < 0 ? -3 : look;
}
*/
import "C"

import "unsafe"

// dirtyThenLook and dirtyClearLook are the probe's controls: the first
// must see a dirty state (1), the second a clean one (0); -1 when the CPU
// cannot say (XGETBV with ECX=1).
func dirtyThenLook() int  { return int(C.pg_dirty_then_look()) }
func dirtyClearLook() int { return int(C.pg_dirty_clear_look()) }

// inflateThenLook runs one inflate step of blob into out and reports the
// vector state it returned with: 1 dirty, 0 clean, -1 unknown, below -1 an
// error. For tests.
func inflateThenLook(blob, out []byte) int {
	return int(C.pg_inflate_then_look((*C.uint8_t)(unsafe.Pointer(&blob[0])), C.uint32_t(len(blob)),
		(*C.uint8_t)(unsafe.Pointer(&out[0])), C.uint32_t(len(out))))
}
