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
// UPX uses for ELF). Running out of
// input, of output, or of history is an error: a tampered block can never
// read or write outside its buffers, and since every step consumes input
// the decoder always ends.
type nrvDecoder struct {
	src []byte
	in  int
	bb  uint32
	bc  uint
	bad bool
}

func (d *nrvDecoder) bit() uint32 {
	if d.bc == 0 {
		if d.in+4 > len(d.src) {
			d.bad = true
			return 1 // a set bit ends every loop that reads one
		}
		s := d.src[d.in : d.in+4]
		d.bb = uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		d.in += 4
		d.bc = 32
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

// nrvDecompress decodes src into dst, which must be exactly filled.
func nrvDecompress(v nrvVariant, src, dst []byte) error {
	d := nrvDecoder{src: src}
	out := 0
	lastOff := uint32(1)
	for {
		for d.bit() == 1 {
			if d.bad {
				return fmt.Errorf("%w: input ends inside a literal run", errNRV)
			}
			if out >= len(dst) || d.in >= len(src) {
				return fmt.Errorf("%w: literal beyond the block (%d of %d bytes)", errNRV, out, len(dst))
			}
			dst[out] = src[d.in]
			d.in++
			out++
		}
		if d.bad {
			return fmt.Errorf("%w: input ends before the end marker", errNRV)
		}
		off := uint32(1)
		var mlen uint32
		switch v {
		case nrv2b:
			for {
				off = off*2 + d.bit()
				if d.bit() == 1 || off > 0xffffff+3 || d.bad {
					break
				}
			}
		default:
			for {
				off = off*2 + d.bit()
				if d.bit() == 1 || off > 0xffffff+3 || d.bad {
					break
				}
				off = (off-1)*2 + d.bit()
			}
		}
		if d.bad || off > 0xffffff+3 {
			return fmt.Errorf("%w: bad match offset", errNRV)
		}
		if off == 2 {
			off = lastOff
			if v != nrv2b {
				mlen = d.bit()
			}
		} else {
			off = (off-3)*256 + d.byte()
			if d.bad {
				return fmt.Errorf("%w: input ends inside a match offset", errNRV)
			}
			if off == 0xffffffff {
				break // the end marker
			}
			if v != nrv2b {
				mlen = (off ^ 0xffffffff) & 1
				off >>= 1
			}
			off++
			lastOff = off
		}
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
		if d.bad {
			return fmt.Errorf("%w: input ends inside a match length", errNRV)
		}
		far := uint32(0x500)
		if v == nrv2b {
			far = 0xd00
		}
		if off > far {
			mlen++
		}
		mlen++ // a match copies one byte more than its coded length
		if uint64(off) > uint64(out) {
			return fmt.Errorf("%w: match reaches %d bytes back from offset %d", errNRV, off, out)
		}
		if uint64(mlen) > uint64(len(dst)-out) {
			return fmt.Errorf("%w: match beyond the block (%d of %d bytes)", errNRV, out, len(dst))
		}
		from := out - int(off)
		end := out + int(mlen)
		if int(off) >= int(mlen) {
			copy(dst[out:end], dst[from:from+int(mlen)])
		} else {
			for ; out < end; out, from = out+1, from+1 {
				dst[out] = dst[from]
			}
		}
		out = end
	}
	if out != len(dst) {
		return fmt.Errorf("%w: %d bytes decoded, the block declares %d", errNRV, out, len(dst))
	}
	if d.in != len(src) {
		return fmt.Errorf("%w: %d bytes follow the end marker", errNRV, len(src)-d.in)
	}
	return nil
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
