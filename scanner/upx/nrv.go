package upx

import (
	"errors"
	"fmt"
)

// errNRV is what every malformed NRV stream reports, with the detail
// wrapped around it.
var errNRV = errors.New("corrupt NRV stream")

// nrvVariant is one of UCL's three NRV formats, which differ only in how a
// match's offset and length are coded.
type nrvVariant uint8

const (
	nrv2b nrvVariant = iota
	nrv2d
	nrv2e
)

// nrvDecoder decodes one NRV block into a buffer of the size that the
// block's b_info declares. Flag bits are read MSB first from a bit buffer
// refilled 32 bits at a time from a little-endian word (the _LE32 methods
// UPX uses for ELF), or a byte at a time (the _8 ones). Running out of
// input, of output, or of history is an error: a tampered block can never
// read or write outside its buffers, and since every step consumes input
// the decoder always ends.
type nrvDecoder struct {
	src   []byte
	in    int
	bb    uint32
	bc    uint
	bad   bool
	byte8 bool // the _8 variants: the bit buffer is refilled a byte at a time
}

func (d *nrvDecoder) bit() uint32 {
	if d.bc == 0 {
		n := 4
		if d.byte8 {
			n = 1
		}
		if d.in+n > len(d.src) {
			d.bad = true
			return 1 // a set bit ends every loop that reads one
		}
		if d.byte8 {
			d.bb, d.bc = uint32(d.src[d.in]), 8
		} else {
			s := d.src[d.in : d.in+4]
			d.bb, d.bc = uint32(s[0])|uint32(s[1])<<8|uint32(s[2])<<16|uint32(s[3])<<24, 32
		}
		d.in += n
	}
	d.bc--
	return (d.bb >> d.bc) & 1
}

func (d *nrvDecoder) byte() uint32 {
	if d.in >= len(d.src) {
		d.bad = true
		return 0
	}
	b := d.src[d.in]
	d.in++
	return uint32(b)
}

// nrvDecompress decodes src, an _LE32 stream, into dst, which must be
// exactly filled.
func nrvDecompress(v nrvVariant, src, dst []byte) error {
	return nrvDecode(nrvDecoder{src: src}, v, dst)
}

// nrvDecompress8 decodes src, an _8 stream, into dst.
func nrvDecompress8(v nrvVariant, src, dst []byte) error {
	return nrvDecode(nrvDecoder{src: src, byte8: true}, v, dst)
}

func nrvDecode(d nrvDecoder, v nrvVariant, dst []byte) error {
	src := d.src
	out := 0
	lastOff := uint32(1)
	for {
		var err error
		if out, err = d.literals(dst, out); err != nil {
			return err
		}
		off, mlen, end, err := d.offset(v, &lastOff)
		if err != nil {
			return err
		}
		if end {
			break
		}
		mlen = d.length(v, mlen, off)
		if d.bad {
			return fmt.Errorf("%w: input ends inside a match length", errNRV)
		}
		if out, err = copyMatch(dst, out, off, mlen); err != nil {
			return err
		}
	}
	if out != len(dst) {
		return fmt.Errorf("%w: %d bytes decoded, the block declares %d", errNRV, out, len(dst))
	}
	if d.in != len(src) {
		return fmt.Errorf("%w: %d bytes follow the end marker", errNRV, len(src)-d.in)
	}
	return nil
}

// literals copies a run of literal bytes to dst from out, and returns
// where the output stands after it.
func (d *nrvDecoder) literals(dst []byte, out int) (int, error) {
	for d.bit() == 1 {
		if d.bad {
			return out, fmt.Errorf("%w: input ends inside a literal run", errNRV)
		}
		if out >= len(dst) || d.in >= len(d.src) {
			return out, fmt.Errorf("%w: literal beyond the block (%d of %d bytes)", errNRV, out, len(dst))
		}
		dst[out] = d.src[d.in]
		d.in++
		out++
	}
	if d.bad {
		return out, fmt.Errorf("%w: input ends before the end marker", errNRV)
	}
	return out, nil
}

// offset reads a match's offset (the last one again, or a new one, which
// becomes *lastOff), with the low bit of its length that NRV2D and NRV2E
// code beside it. end is set at the end marker.
func (d *nrvDecoder) offset(v nrvVariant, lastOff *uint32) (off, mlen uint32, end bool, err error) {
	off = 1
	for {
		off = off*2 + d.bit()
		if d.bit() == 1 || off > 0xffffff+3 || d.bad {
			break
		}
		if v != nrv2b {
			off = (off-1)*2 + d.bit()
		}
	}
	if d.bad || off > 0xffffff+3 {
		return 0, 0, false, fmt.Errorf("%w: bad match offset", errNRV)
	}
	if off == 2 {
		if v != nrv2b {
			mlen = d.bit()
		}
		return *lastOff, mlen, false, nil
	}
	off = (off-3)*256 + d.byte()
	if d.bad {
		return 0, 0, false, fmt.Errorf("%w: input ends inside a match offset", errNRV)
	}
	if off == 0xffffffff {
		return 0, 0, true, nil // the end marker
	}
	if v != nrv2b {
		mlen = (off ^ 0xffffffff) & 1
		off >>= 1
	}
	off++
	*lastOff = off
	return off, mlen, false, nil
}

// length reads the rest of a match's length, mlen being what offset read
// of it, and returns the number of bytes the match copies.
func (d *nrvDecoder) length(v nrvVariant, mlen, off uint32) uint32 {
	switch v {
	case nrv2e:
		switch {
		case mlen != 0:
			mlen = 1 + d.bit()
		case d.bit() == 1:
			mlen = 3 + d.bit()
		default:
			mlen = d.gamma() + 3
		}
	default:
		if v == nrv2b {
			mlen = d.bit()
		}
		mlen = mlen*2 + d.bit()
		if mlen == 0 {
			mlen = d.gamma() + 2
		}
	}
	far := uint32(0x500)
	if v == nrv2b {
		far = 0xd00
	}
	if off > far {
		mlen++
	}
	return mlen + 1 // a match copies one byte more than its coded length
}

// copyMatch copies mlen bytes from off bytes back in dst to out, and
// returns where the output stands after it.
func copyMatch(dst []byte, out int, off, mlen uint32) (int, error) {
	if uint64(off) > uint64(out) {
		return out, fmt.Errorf("%w: match reaches %d bytes back from offset %d", errNRV, off, out)
	}
	if uint64(mlen) > uint64(len(dst)-out) {
		return out, fmt.Errorf("%w: match beyond the block (%d of %d bytes)", errNRV, out, len(dst))
	}
	from := out - int(off)
	end := out + int(mlen)
	if int(off) >= int(mlen) {
		copy(dst[out:end], dst[from:from+int(mlen)])
		return end, nil
	}
	for ; out < end; out, from = out+1, from+1 {
		dst[out] = dst[from]
	}
	return end, nil
}

// gamma reads an Elias-gamma style length: 1, then a bit per step until a
// set continuation bit. It is bounded so a stream of zero bits cannot grow
// it past any block UPX writes.
func (d *nrvDecoder) gamma() uint32 {
	n := uint32(1)
	for {
		n = n*2 + d.bit()
		if d.bit() == 1 || d.bad {
			return n
		}
		if n > 0xffffff {
			d.bad = true
			return n
		}
	}
}
