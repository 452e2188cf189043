package upx

import (
	"encoding/binary"
	"fmt"
)

// unfilter undoes the filter UPX applied to a block of code before
// compressing it, so the bytes equal what "upx -d" restores. UPX records
// the filter per block (b_info.b_ftid, b_cto8) and the runtime always
// unfilters with an add value of 0.
//
//   - 0x46, 0x49 (ctok32, x86): the 32-bit displacement of every CALL and
//     JMP rel32 (and, for 0x49, Jcc rel32) that lands inside the block was
//     replaced by its big-endian absolute target whose top byte is cto8.
//   - 0x52 (ct26arm, arm64): the 26-bit displacement of every B and BL was
//     replaced by the absolute target in words.
//   - 0x50 (ct24arm, 32-bit ARM): the 24-bit displacement of every BL,
//     whatever its condition (the top byte's low half 0xb), was replaced
//     by the absolute target in words.
//
// Any other filter id is refused: guessing would hand the scanner bytes
// that differ from what the host runs.
func unfilter(id, cto8 byte, b []byte) error {
	switch id {
	case 0:
		return nil
	case 0x46, 0x49:
		unfilterCtok32(id, cto8, b)
		return nil
	case 0x52:
		unfilterCt26arm(b)
		return nil
	case 0x50:
		unfilterCt24arm(b)
		return nil
	}
	return fmt.Errorf("filter 0x%02x is not supported", id)
}

func unfilterCtok32(id, cto8 byte, b []byte) {
	if len(b) <= 5 {
		return
	}
	jcc := id&0x0f >= 9
	cto := uint32(cto8) << 24
	lastcall := 0
	size5 := len(b) - 5
	for ic := 0; ic < size5; ic++ {
		c := b[ic]
		if !(c == 0xe8 || c == 0xe9 || (jcc && lastcall != ic && ic > 0 && b[ic-1] == 0x0f && c >= 0x80 && c <= 0x8f)) {
			continue
		}
		if b[ic+1] != cto8 {
			continue
		}
		jc := binary.BigEndian.Uint32(b[ic+1:])
		binary.LittleEndian.PutUint32(b[ic+1:], jc-uint32(ic)-1-cto)
		ic += 4
		lastcall = ic + 1
	}
}

func unfilterCt26arm(b []byte) {
	// As UPX's loop: the first word always, then every word that starts
	// more than 4 bytes before the end.
	for i := 0; i+4 <= len(b) && (i == 0 || i < len(b)-4); i += 4 {
		if b[i+3]&0x7c == 0x14 {
			w := binary.LittleEndian.Uint32(b[i:])
			v := (w & 0x03ffffff) - uint32(i)/4
			binary.LittleEndian.PutUint32(b[i:], w&0xfc000000|v&0x03ffffff)
		}
	}
}

func unfilterCt24arm(b []byte) {
	for i := 0; i+4 <= len(b); i += 4 {
		if b[i+3]&0x0f == 0x0b {
			w := binary.LittleEndian.Uint32(b[i:])
			v := (w & 0x00ffffff) - uint32(i)/4
			binary.LittleEndian.PutUint32(b[i:], w&0xff000000|v&0x00ffffff)
		}
	}
}
