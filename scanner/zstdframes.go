package scanner

import "encoding/binary"

// zstdFrameStarts lists where the frames of data, a zstd file, start, as
// far as their headers and block headers can be followed: a zstd file's
// own frames, which reading it covers. A skippable frame is passed over,
// not listed: zstd -d passes over what it holds, and tail -c cuts out a
// frame hidden in it (outside attack round 19).
func zstdFrameStarts(data []byte) map[int64]bool {
	starts := map[int64]bool{}
	zstdFrames(data, func(off int, skippable bool) {
		if !skippable {
			starts[int64(off)] = true
		}
	})
	return starts
}

// zstdFrames follows the zstd and skippable frames data starts with, as
// far as their headers and block headers can be followed (see
// zstdFrameLen), and tells fn where each whole one starts, and whether it
// is skippable. It returns where the frames it followed end: 0 when the
// first cannot be followed.
func zstdFrames(data []byte, fn func(off int, skippable bool)) int {
	le := binary.LittleEndian
	n := 0
	for n+8 <= len(data) {
		switch magic := le.Uint32(data[n:]); {
		case magic&zstdSkippableMask == zstdSkippableStart:
			size := int64(le.Uint32(data[n+4:]))
			if int64(n)+8+size > int64(len(data)) {
				return n
			}
			fn(n, true)
			n += 8 + int(size)
		case magic == 0xFD2FB528:
			l, ok := zstdFrameLen(data[n:])
			if !ok {
				return n
			}
			fn(n, false)
			n += l
		default:
			return n
		}
	}
	return n
}

// zstdFrameLen is the length of the zstd frame data starts with, from its
// header and its blocks' headers (RFC 8878, 3.1.1).
func zstdFrameLen(data []byte) (int, bool) {
	if len(data) < 5 {
		return 0, false
	}
	fhd := data[4]
	single := fhd>>5&1 == 1
	n := 5 + [4]int{0, 1, 2, 4}[fhd&3] + [4]int{0, 2, 4, 8}[fhd>>6]
	if !single {
		n++ // window descriptor
	} else if fhd>>6 == 0 {
		n++ // a one-byte content size
	}
	for {
		if n+3 > len(data) {
			return 0, false
		}
		b := int(data[n]) | int(data[n+1])<<8 | int(data[n+2])<<16
		last, kind, size := b&1 == 1, b>>1&3, b>>3
		switch kind {
		case 1: // RLE: one byte, repeated
			size = 1
		case 3:
			return 0, false
		}
		n += 3 + size
		if last {
			break
		}
	}
	if fhd>>2&1 == 1 {
		n += 4 // content checksum
	}
	return n, n <= len(data)
}
