// Package liblzma decodes .lzma files (LZMA_Alone, the format of
// lzma-utils and of `xz --format=lzma`), and single .xz streams, with liblzma, the library the
// host's own xz, unlzma, bsdtar and dpkg read them with.
//
// Reading a file the way the host does matters at its end: liblzma hands
// out every byte it decoded before an error, as xz writes them out before
// it complains, so a stream cut or damaged after its payload gives the
// payload. A decoder that decodes a dictionary's worth ahead and drops it
// on an error would give nothing of it. liblzma also allocates the
// dictionary a header asks for without touching it: a header that only
// looks like one, in a program's bytes, costs no more than what it
// decodes.
//
// liblzma only decodes: it never decides what a stream is, and no Go
// pointer is kept on the C side past a call.
package liblzma

/*
#cgo LDFLAGS: -llzma
#cgo CFLAGS: -I${SRCDIR}/../isal
#include <stdlib.h>
#include <string.h>
#include <lzma.h>
#include "vector.h"

// pg_new starts a decoder of one .lzma stream, or of one .xz stream when
// xz is set (no LZMA_CONCATENATED: it ends with the stream, before any
// padding or stream after it).
static lzma_stream *pg_new(int xz, uint64_t memlimit, int *ret) {
	lzma_stream *s = calloc(1, sizeof(*s)); // LZMA_STREAM_INIT is all zeros
	if (s == NULL) {
		*ret = LZMA_MEM_ERROR;
		return NULL;
	}
	*ret = xz ? lzma_stream_decoder(s, memlimit, 0) : lzma_alone_decoder(s, memlimit);
	pg_clear_upper();
	if (*ret != LZMA_OK) {
		lzma_end(s);
		free(s);
		return NULL;
	}
	return s;
}

// pg_capped starts a decoder of an .lzma stream whose 13-byte header was
// read by the caller: LZMA1 with the header's properties and uncompressed
// size (UINT64_MAX: unknown, an end marker ends it; otherwise an end
// marker may still end it there, as lzma_alone_decoder allows), and a
// dictionary of dict bytes, which may be smaller than the header's.
static lzma_stream *pg_capped(uint8_t props, uint32_t dict, uint64_t size, int *ret) {
	lzma_stream *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*ret = LZMA_MEM_ERROR;
		return NULL;
	}
	lzma_options_lzma opt;
	memset(&opt, 0, sizeof(opt));
	opt.dict_size = dict;
	opt.lc = props % 9;
	props /= 9;
	opt.lp = props % 5;
	opt.pb = props / 5;
	opt.ext_flags = LZMA_LZMA1EXT_ALLOW_EOPM;
	opt.ext_size_low = (uint32_t)size;
	opt.ext_size_high = (uint32_t)(size >> 32);
	lzma_filter filters[2] = {{LZMA_FILTER_LZMA1EXT, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
	*ret = lzma_raw_decoder(s, filters);
	pg_clear_upper();
	if (*ret != LZMA_OK) {
		lzma_end(s);
		free(s);
		return NULL;
	}
	return s;
}

// pg_code runs one step over in and out, which are the caller's for the
// call only: the stream keeps no pointer to them.
static int pg_code(lzma_stream *s, const uint8_t *in, size_t in_len, size_t *in_used,
                   uint8_t *out, size_t out_len, size_t *out_made, int finish) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	int ret = lzma_code(s, finish ? LZMA_FINISH : LZMA_RUN);
	pg_clear_upper();
	*in_used = in_len - s->avail_in;
	*out_made = out_len - s->avail_out;
	s->next_in = NULL;
	s->avail_in = 0;
	s->next_out = NULL;
	s->avail_out = 0;
	return ret;
}

static void pg_end(lzma_stream *s) {
	lzma_end(s);
	free(s);
}
*/
import "C"

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"
)

var (
	// ErrCorrupt is wrapped by every error about the stream's content.
	ErrCorrupt = errors.New("lzma: corrupt stream")
	// ErrMemLimit is wrapped when the stream needs more memory than the
	// limit it was opened with.
	ErrMemLimit = errors.New("lzma: memory limit")
)

// Reader decodes one .lzma stream from a bufio.Reader. It takes from the
// source only the bytes the stream is made of: after the stream's end,
// the source is positioned on the first byte after it.
type Reader struct {
	src     *bufio.Reader
	s       *C.lzma_stream
	err     error // returned once the bytes before it are given out
	stalled int   // steps in a row that moved nothing
	capped  bool  // decoded with less dictionary than its header asks
	cleanup runtime.Cleanup
}

// NewReader returns a Reader of the .lzma stream in src, whose header
// liblzma reads on the first Read. memlimit bounds what the decoder may
// allocate: the dictionary the header asks for and the literal coder's
// tables. Close frees the C memory.
func NewReader(src *bufio.Reader, memlimit uint64) (*Reader, error) {
	return newReader(src, memlimit, false)
}

// NewXzReader returns a Reader of the one .xz stream src starts with, as
// NewReader is of an .lzma stream: it ends with that stream, before its
// padding or the stream after it, as zstd -dc reads an .xz frame among
// frames of other formats.
func NewXzReader(src *bufio.Reader, memlimit uint64) (*Reader, error) {
	return newReader(src, memlimit, true)
}

// NewCappedReader returns a Reader of the .lzma stream in src that
// decodes with a dictionary of at most dictCap bytes, whatever its header
// asks: a stream only reaches back as far as it has decoded, so one whose
// output is no larger than dictCap decodes as with the header's, and one
// that reaches back farther fails with ErrDictCap. It reads the header
// itself; one liblzma would refuse (properties over 224) is ErrCorrupt.
func NewCappedReader(src *bufio.Reader, dictCap uint32) (*Reader, error) {
	h, err := src.Peek(13)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	if h[0] >= 9*5*5 {
		return nil, fmt.Errorf("%w: header: properties %d", ErrCorrupt, h[0])
	}
	dict := binary.LittleEndian.Uint32(h[1:5])
	var ret C.int
	s := C.pg_capped(C.uint8_t(h[0]), C.uint32_t(max(min(dict, dictCap), 4096)), C.uint64_t(binary.LittleEndian.Uint64(h[5:13])), &ret)
	if s == nil {
		return nil, fmt.Errorf("lzma: start the decoder: %s", retString(ret))
	}
	_, _ = src.Discard(13)
	r := &Reader{src: src, s: s, capped: dict > dictCap}
	r.cleanup = runtime.AddCleanup(r, func(s *C.lzma_stream) { C.pg_end(s) }, s)
	return r, nil
}

// ErrDictCap is the error of a stream read by NewCappedReader that
// reaches back farther than the dictionary it was given, less than its
// header asked.
var ErrDictCap = errors.New("lzma: the stream reaches back farther than the dictionary it is decoded with")

func newReader(src *bufio.Reader, memlimit uint64, xz bool) (*Reader, error) {
	var ret, x C.int
	if xz {
		x = 1
	}
	s := C.pg_new(x, C.uint64_t(memlimit), &ret)
	if s == nil {
		return nil, fmt.Errorf("lzma: start the decoder: %s", retString(ret))
	}
	r := &Reader{src: src, s: s}
	r.cleanup = runtime.AddCleanup(r, func(s *C.lzma_stream) { C.pg_end(s) }, s)
	return r, nil
}

// Read decodes into p. Bytes decoded before an error are returned first,
// with a nil error; the error follows on the next call.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.s == nil {
		return 0, errors.New("lzma: read after Close")
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		in, atEOF := r.input()
		var inUsed, outMade C.size_t
		var inPtr *C.uint8_t
		if len(in) > 0 {
			inPtr = (*C.uint8_t)(unsafe.Pointer(&in[0]))
		}
		finish := C.int(0)
		if atEOF {
			finish = 1
		}
		ret := C.pg_code(r.s, inPtr, C.size_t(len(in)), &inUsed,
			(*C.uint8_t)(unsafe.Pointer(&p[0])), C.size_t(len(p)), &outMade, finish)
		runtime.KeepAlive(in)
		// Discarding what was peeked cannot fail.
		_, _ = r.src.Discard(int(inUsed))
		n := int(outMade)
		r.err = stepError(ret)
		if r.capped && ret == C.LZMA_DATA_ERROR {
			r.err = fmt.Errorf("%w: %w", ErrDictCap, r.err)
		}
		if r.err == nil {
			if n > 0 {
				r.stalled = 0
				return n, nil
			}
			if inUsed > 0 {
				r.stalled = 0
				continue
			}
			// liblzma moves something whenever it has input and room, and
			// answers LZMA_BUF_ERROR to a second step that cannot.
			if r.stalled++; r.stalled > 2 {
				r.err = fmt.Errorf("%w: %w", ErrCorrupt, io.ErrUnexpectedEOF)
				return 0, r.err
			}
			continue
		}
		if n > 0 {
			return n, nil
		}
		return 0, r.err
	}
}

// stepError is what a step's return means: nil to go on, io.EOF at the
// stream's end, or the error that ends it.
func stepError(ret C.int) error {
	switch ret {
	case C.LZMA_OK:
		return nil
	case C.LZMA_STREAM_END:
		return io.EOF
	case C.LZMA_MEMLIMIT_ERROR, C.LZMA_MEM_ERROR:
		return fmt.Errorf("%w: %s", ErrMemLimit, retString(ret))
	case C.LZMA_BUF_ERROR:
		return fmt.Errorf("%w: %w", ErrCorrupt, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%w: %s", ErrCorrupt, retString(ret))
}

// input is what the source holds buffered, after filling it when it
// holds nothing; atEOF when the source has nothing more.
func (r *Reader) input() ([]byte, bool) {
	if r.src.Buffered() == 0 {
		if _, err := r.src.Peek(1); err != nil {
			return nil, true
		}
	}
	in, _ := r.src.Peek(r.src.Buffered())
	return in, false
}

// Close frees the decoder. The Reader cannot be read after it.
func (r *Reader) Close() {
	if r.s == nil {
		return
	}
	r.cleanup.Stop()
	C.pg_end(r.s)
	r.s = nil
}

func retString(ret C.int) string {
	switch ret {
	case C.LZMA_MEM_ERROR:
		return "cannot allocate memory"
	case C.LZMA_MEMLIMIT_ERROR:
		return "memory usage limit reached"
	case C.LZMA_FORMAT_ERROR:
		return "not an .lzma header"
	case C.LZMA_OPTIONS_ERROR:
		return "unsupported header options"
	case C.LZMA_DATA_ERROR:
		return "compressed data is corrupt"
	case C.LZMA_BUF_ERROR:
		return "unexpected end of input"
	}
	return fmt.Sprintf("liblzma error %d", int(ret))
}
