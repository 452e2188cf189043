package isal

/*
#cgo LDFLAGS: -lisal
#include <stdlib.h>
#include <string.h>
#include <isa-l/igzip_lib.h>
#include "vector.h"

// flag is ISAL_GZIP, or ISAL_DEFLATE for a raw stream (no header or
// trailer), as a zip member is.
static struct inflate_state *pg_new(int flag) {
	struct inflate_state *s = malloc(sizeof(*s));
	if (s != NULL) {
		isal_inflate_init(s);
		pg_clear_upper();
		s->crc_flag = flag;
	}
	return s;
}

static void pg_reset(struct inflate_state *s, int flag) {
	isal_inflate_reset(s);
	pg_clear_upper();
	s->crc_flag = flag;
}

// pg_isal_inflate is isal_inflate; tests put a stand-in here that leaves
// the vector state as ISA-L's AVX-512 paths do.
int (*pg_isal_inflate)(struct inflate_state *) = isal_inflate;

// pg_inflate runs one step; it reports how much input it used, how much
// output it made, and whether the member ended.
int pg_inflate(struct inflate_state *s, uint8_t *in, uint32_t in_len, uint32_t *in_used,
                      uint8_t *out, uint32_t out_len, uint32_t *out_made, int *finished, int *held) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	int ret = pg_isal_inflate(s);
	pg_clear_upper();
	*in_used = in_len - s->avail_in;
	*out_made = out_len - s->avail_out;
	*finished = s->block_state == ISAL_BLOCK_FINISH;
	// Whole bytes ISA-L took from in but holds unread in its bit buffer.
	*held = s->read_in_length / 8;
	return ret;
}
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// ErrCorrupt is wrapped by every error about the stream's content.
var ErrCorrupt = errors.New("gzip: corrupt stream")

const (
	inSize  = 256 << 10
	outSize = 512 << 10
	// firstRead is a stream's first read from its source, doubled on
	// each later one up to inSize: most zip members are a few hundred
	// bytes to a few KiB, and a source that is not bounded to the member
	// would otherwise be asked for 256 KiB each time; a candidate stream
	// behind a file's start is tried by its first bytes alone.
	firstRead = 4 << 10
)

// Reader inflates a gzip stream, or a raw deflate stream (NewRawReader).
type Reader struct {
	src      io.Reader
	state    *C.struct_inflate_state
	in       *C.uint8_t // C buffers, freed by Close
	out      *C.uint8_t
	inBuf    []byte // views of the C buffers
	outB     []byte
	inLen    int // unconsumed input in inBuf[inOff:inLen]
	inOff    int
	outLo    int // pending output in outB[outLo:outHi]
	outHi    int
	srcEOF   bool
	finished bool // the current member ended
	members  int
	err      error
	cleanup  runtime.Cleanup
	raw      bool  // a raw deflate stream: one, no header or trailer
	readCap  int   // most bytes the next fill reads
	read     int64 // bytes read from src
	held     int   // whole bytes in ISA-L's bit buffer after the last step
	stale    bool  // the C state still holds the stream before Reset
	atHeader bool  // a gzip member's header is next (see wholeHeader)
	onMember func(off int64)
}

// NewReader returns a Reader over r. The gzip header is checked on the
// first Read. Close frees the C memory.
func NewReader(r io.Reader) (*Reader, error) {
	return newReader(r, false)
}

// NewRawReader returns a Reader of the raw deflate stream in r (RFC 1951,
// as zip members hold it). It ends at the stream's final block: it does
// not read on to look for more, and reads from r at most a few KiB past
// that block (a bounded source, as archive/zip gives, is read no
// further than its bound). It checks no checksum, as raw deflate has
// none (archive/zip checks the member's CRC-32 and size itself). A
// source that ends before the final block is an error wrapping
// ErrCorrupt and io.ErrUnexpectedEOF. Reset reuses it for another
// stream; Close frees the C memory.
func NewRawReader(r io.Reader) (*Reader, error) {
	return newReader(r, true)
}

func newReader(r io.Reader, raw bool) (*Reader, error) {
	state := C.pg_new(crcFlag(raw))
	in := (*C.uint8_t)(C.malloc(inSize))
	out := (*C.uint8_t)(C.malloc(outSize))
	if state == nil || in == nil || out == nil {
		C.free(unsafe.Pointer(state))
		C.free(unsafe.Pointer(in))
		C.free(unsafe.Pointer(out))
		return nil, errors.New("isal: out of memory")
	}
	z := &Reader{
		src: r, state: state, in: in, out: out,
		inBuf: unsafe.Slice((*byte)(unsafe.Pointer(in)), inSize),
		outB:  unsafe.Slice((*byte)(unsafe.Pointer(out)), outSize),
		raw:   raw, readCap: firstRead, atHeader: !raw,
	}
	// A Reader dropped without Close still gives its C memory back.
	z.cleanup = runtime.AddCleanup(z, freeC, cMem{state, in, out})
	live.Add(1)
	return z, nil
}

// live counts the Readers whose C memory is not freed yet.
var live atomic.Int64

// Live reports how many Readers hold C memory (about 768 KiB each): those
// not closed and not yet collected.
func Live() int64 { return live.Load() }

func crcFlag(raw bool) C.int {
	if raw {
		return C.ISAL_DEFLATE
	}
	return C.ISAL_GZIP
}

// Reset makes z read a new stream from r, of the kind it was made for,
// keeping its C memory; it drops its hold on the previous source. The C
// state is reset on the next Read, so a Reset(nil) that only lets go of a
// source costs nothing. A closed Reader cannot be reset.
func (z *Reader) Reset(r io.Reader) error {
	if z.state == nil {
		return errors.New("isal: reset of a closed reader")
	}
	*z = Reader{
		src: r, state: z.state, in: z.in, out: z.out, inBuf: z.inBuf, outB: z.outB,
		cleanup: z.cleanup, raw: z.raw, readCap: firstRead, stale: true, atHeader: !z.raw,
	}
	return nil
}

type cMem struct {
	state   *C.struct_inflate_state
	in, out *C.uint8_t
}

func freeC(m cMem) {
	live.Add(-1)
	C.free(unsafe.Pointer(m.state))
	C.free(unsafe.Pointer(m.in))
	C.free(unsafe.Pointer(m.out))
}

// Read implements io.Reader.
func (z *Reader) Read(p []byte) (int, error) {
	for z.outLo == z.outHi {
		if z.err != nil {
			return 0, z.err
		}
		z.err = z.step()
	}
	n := copy(p, z.outB[z.outLo:z.outHi])
	z.outLo += n
	if z.raw && z.finished && z.outLo == z.outHi {
		// The end comes with the last bytes, as compress/flate gives it:
		// archive/zip then checks the member's CRC-32 and size in the
		// same Read, even for a caller that reads no further.
		z.err = io.EOF
		return n, io.EOF
	}
	return n, nil
}

// step inflates the next chunk into outB, or sets the final error.
func (z *Reader) step() error {
	if z.stale {
		C.pg_reset(z.state, crcFlag(z.raw))
		z.stale = false
	}
	if z.finished {
		if z.raw {
			return io.EOF
		}
		// A member ended: more input must be another member, or nothing.
		if err := z.fill(); err != nil {
			return err
		}
		if z.inOff == z.inLen {
			return io.EOF
		}
		if z.inBuf[z.inOff] != 0x1f {
			return fmt.Errorf("%w: data after the end of the gzip stream", ErrCorrupt)
		}
		if z.onMember != nil {
			z.onMember(z.read - int64(z.inLen-z.inOff))
		}
		C.pg_reset(z.state, C.ISAL_GZIP)
		z.finished = false
		z.atHeader = true
	}
	if z.atHeader {
		if err := z.wholeHeader(); err != nil {
			return err
		}
		z.atHeader = false
		oldMagic(z.inBuf[z.inOff:z.inLen])
	}
	if z.inOff == z.inLen && !z.srcEOF {
		if err := z.fill(); err != nil {
			return err
		}
	}
	var used, made C.uint32_t
	var fin, held C.int
	ret := C.pg_inflate(z.state, (*C.uint8_t)(unsafe.Add(unsafe.Pointer(z.in), z.inOff)), C.uint32_t(z.inLen-z.inOff), &used,
		z.out, outSize, &made, &fin, &held)
	z.inOff += int(used)
	z.held = int(held)
	z.outLo, z.outHi = 0, int(made)
	switch {
	case ret < 0:
		return z.corrupt(errors.New(errText(int(ret))))
	case fin != 0:
		z.finished = true
		z.members++
	case made == 0 && used == 0 && z.srcEOF && z.inOff == z.inLen:
		return z.corrupt(io.ErrUnexpectedEOF)
	}
	return nil
}

// corrupt is the error for what is wrong with the stream's content.
func (z *Reader) corrupt(what error) error {
	if z.raw {
		return deflateError{what}
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, what)
}

// deflateError is about a raw deflate stream; it is ErrCorrupt without
// saying gzip.
type deflateError struct{ what error }

func (e deflateError) Error() string   { return "deflate: corrupt stream: " + e.what.Error() }
func (e deflateError) Unwrap() []error { return []error{ErrCorrupt, e.what} }

// ErrHeaderTooLong is the error for a gzip member whose header (its
// name, comment or extra field) is longer than the input buffer.
var ErrHeaderTooLong = fmt.Errorf("%w: gzip header longer than %d bytes", ErrCorrupt, inSize)

// wholeHeader reads until the gzip member's header is whole in the input
// buffer (or the source ends, for ISA-L to refuse). ISA-L checks a
// header's CRC-16 (FHCRC) wrongly when the header comes in more than one
// step, and refuses a header gzip -d accepts.
func (z *Reader) wholeHeader() error {
	for {
		if gzipHeaderWhole(z.inBuf[z.inOff:z.inLen]) || z.srcEOF {
			return nil
		}
		if z.inOff == 0 && z.inLen == len(z.inBuf) {
			return ErrHeaderTooLong
		}
		if err := z.fill(); err != nil {
			return err
		}
	}
}

// oldMagic gives ISA-L the gzip magic in place of the one gzip 0.5 wrote,
// 1f 9e, at the whole header b starts with: gzip -d reads such a member
// as gzip, at a file's start or after other members. A header CRC-16
// (FHCRC) covers the magic: one that holds over the header as it stands
// is made again over the new magic, one that does not is left for ISA-L
// to refuse with the old magic, as gzip -d refuses it.
func oldMagic(b []byte) {
	if len(b) < 10 || b[0] != 0x1f || b[1] != 0x9e {
		return
	}
	n, ok := gzipHeaderLen(b)
	if !ok {
		return
	}
	if b[3]&2 == 0 {
		b[1] = 0x8b
		return
	}
	if uint16(crc32.ChecksumIEEE(b[:n-2])) != binary.LittleEndian.Uint16(b[n-2:n]) {
		return
	}
	b[1] = 0x8b
	binary.LittleEndian.PutUint16(b[n-2:n], uint16(crc32.ChecksumIEEE(b[:n-2])))
}

// OldMagicHeader is the header of the gzip member b starts with, as
// oldMagic gives it to ISA-L, when it has gzip 0.5's magic and is whole
// in b: a copy, for another gzip reader to read in its place. It is nil
// for any other header.
func OldMagicHeader(b []byte) []byte {
	n, ok := gzipHeaderLen(b)
	if !ok || b[1] != 0x9e {
		return nil
	}
	h := bytes.Clone(b[:n])
	oldMagic(h)
	return h
}

// HeaderLen is the length of the gzip header b starts with (either
// magic), and whether b holds it whole, however long its fields.
func HeaderLen(b []byte) (int, bool) { return gzipHeaderLen(b) }

// gzipHeaderWhole says whether b starts with a whole gzip header (RFC
// 1952: ten bytes, then the extra field, the name, the comment and the
// header's CRC-16, each as its flag says).
func gzipHeaderWhole(b []byte) bool {
	_, ok := gzipHeaderLen(b)
	return ok
}

// gzipHeaderLen is the length of the gzip header b starts with, and
// whether b holds it whole.
func gzipHeaderLen(b []byte) (int, bool) {
	if len(b) < 10 {
		return 0, false
	}
	flags, n := b[3], 10
	if flags&4 != 0 { // FEXTRA
		if len(b) < n+2 {
			return 0, false
		}
		n += 2 + (int(b[n]) | int(b[n+1])<<8)
	}
	for _, f := range []byte{8, 16} { // FNAME, FCOMMENT: zero-terminated
		if flags&f != 0 {
			if n >= len(b) {
				return 0, false
			}
			end := bytes.IndexByte(b[n:], 0)
			if end < 0 {
				return 0, false
			}
			n += end + 1
		}
	}
	if flags&2 != 0 { // FHCRC
		n += 2
	}
	return n, len(b) >= n
}

// fill moves unconsumed input to the front and reads more behind it.
func (z *Reader) fill() error {
	if z.srcEOF {
		return nil
	}
	if z.inOff > 0 {
		z.inLen = copy(z.inBuf, z.inBuf[z.inOff:z.inLen])
		z.inOff = 0
	}
	end := min(len(z.inBuf), z.inLen+z.readCap)
	z.readCap = min(2*z.readCap, inSize)
	for z.inLen < end {
		n, err := z.src.Read(z.inBuf[z.inLen:end])
		z.inLen += n
		z.read += int64(n)
		if err == io.EOF {
			z.srcEOF = true
			return nil
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return nil
}

// OnMember has f told where each member of a gzip stream after its first
// starts, as an offset into the source, before it is read. Reset drops f.
func (z *Reader) OnMember(f func(off int64)) { z.onMember = f }

// InputUsed is how many bytes of its source a raw stream used up to the
// end of its final block, once Read returned io.EOF (before, it is what
// was used so far): the bytes read from the source, less those still
// unread in the buffer and the whole bytes ISA-L holds in its bit buffer.
// The stream's last byte is counted whole, as the bits after its final
// block are padding. A zip reader finds where a member's data really ends
// with it, whatever size its headers declare.
func (z *Reader) InputUsed() int64 {
	return z.read - int64(z.inLen-z.inOff) - int64(z.held)
}

// Close frees the reader's C memory; it does not close the source.
func (z *Reader) Close() error {
	if z.state != nil {
		z.cleanup.Stop()
		freeC(cMem{z.state, z.in, z.out})
		z.state, z.in, z.out, z.inBuf, z.outB = nil, nil, nil, nil, nil
		z.src = nil
		if z.err == nil {
			z.err = errors.New("isal: reader closed")
		}
	}
	return nil
}

func errText(code int) string {
	switch code {
	case -1:
		return "invalid deflate block"
	case -2:
		return "invalid deflate symbol"
	case -3:
		return "invalid lookback distance"
	case -4:
		return "invalid gzip header"
	case -5:
		return "unsupported compression method"
	case -6:
		return "checksum or length mismatch"
	}
	return fmt.Sprintf("inflate error %d", code)
}
