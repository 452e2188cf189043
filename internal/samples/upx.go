package samples

import (
	"bytes"
	"encoding/binary"
)

// UPX returns a stand-in for a UPX-packed 64-bit ELF: the layout UPX writes
// (ELF header, program headers and no section headers, then l_info,
// p_info and b_info, the "compressed" program, and the PackHeader at the
// end) around payload scrambled so none of its strings show, as packing
// hides them. With altered, every "UPX!" mark is rewritten and the $Info
// and $Id strings are dropped, as miners do to hide the packer. Nothing
// here unpacks or runs, and the scanner cannot restore it: with the marks
// kept it gives a PackerUnpackFailed finding, rewritten it does not have
// enough of UPX's layout for the unpacker (only for the YARA rules).
func UPX(payload []byte, altered bool) []byte { return upx(payload, altered, 64) }

// UPX32 is UPX for a 32-bit ELF.
func UPX32(payload []byte, altered bool) []byte { return upx(payload, altered, 32) }

func upx(payload []byte, altered bool, bits int) []byte {
	le := binary.LittleEndian
	magic := []byte("UPX!")
	if altered {
		magic = []byte{0x0c, 0x91, 0x7e, 0x3a}
	}
	var b bytes.Buffer
	b.Write(packedHeaders(bits))
	orig := uint32(len(payload))*2 + 4096 // the "unpacked" size is larger
	block := min(orig, 512<<10)
	format := byte(22) // UPX_F_LINUX_ELF64_AMD
	if bits == 32 {
		format = 12 // UPX_F_LINUX_ELF_i386
	}
	// l_info
	binary.Write(&b, le, uint32(0x5f3a19c2))
	b.Write(magic)
	binary.Write(&b, le, uint16(0x1a40)) // loader size
	b.WriteByte(14)                      // version
	b.WriteByte(format)
	// p_info
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, orig)
	binary.Write(&b, le, block)
	// b_info and the scrambled program
	scrambled := scramble(payload)
	binary.Write(&b, le, block)
	binary.Write(&b, le, uint32(len(scrambled)))
	b.Write([]byte{14, 0, 0, 0}) // LZMA, no filter
	b.Write(scrambled)
	if !altered {
		b.WriteString("\x00$Info: This file is packed with the UPX executable packer http://upx.sf.net $\n")
		b.WriteString("\x00$Id: UPX 4.02 Copyright (C) 1996-2023 the UPX Team. All Rights Reserved. $\n")
	}
	b.Write(Filler(512)) // the loader stub
	// PackHeader
	b.Write(magic)
	b.Write([]byte{14, format, 14, 10})
	binary.Write(&b, le, uint32(0x1234abcd))
	binary.Write(&b, le, uint32(0x8765dcba))
	binary.Write(&b, le, orig)
	binary.Write(&b, le, uint32(len(scrambled)))
	binary.Write(&b, le, orig)
	b.Write([]byte{0, 0, 0, 0x5c})
	return b.Bytes()
}

// packedHeaders is the ELF header and program headers of a packed
// program: two PT_LOADs (RWX) and a PT_GNU_STACK, as UPX writes them.
func packedHeaders(bits int) []byte {
	le := binary.LittleEndian
	const phnum = 3
	var ehdr []byte
	var phsize int
	if bits == 64 {
		ehdr = make([]byte, 64)
		copy(ehdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
		le.PutUint16(ehdr[16:], 2)    // ET_EXEC
		le.PutUint16(ehdr[18:], 0x3e) // x86-64
		le.PutUint32(ehdr[20:], 1)
		le.PutUint64(ehdr[24:], 0x400000+0x1000) // entry
		le.PutUint64(ehdr[32:], 64)              // e_phoff
		le.PutUint16(ehdr[52:], 64)              // e_ehsize
		le.PutUint16(ehdr[54:], 56)              // e_phentsize
		le.PutUint16(ehdr[56:], phnum)
		le.PutUint16(ehdr[58:], 64) // e_shentsize; e_shoff and e_shnum stay 0
		phsize = 56
	} else {
		ehdr = make([]byte, 52)
		copy(ehdr, []byte{0x7f, 'E', 'L', 'F', 1, 1, 1, 0})
		le.PutUint16(ehdr[16:], 2)
		le.PutUint16(ehdr[18:], 3) // i386
		le.PutUint32(ehdr[20:], 1)
		le.PutUint32(ehdr[24:], 0x8048000+0x1000)
		le.PutUint32(ehdr[28:], 52) // e_phoff
		le.PutUint16(ehdr[40:], 52)
		le.PutUint16(ehdr[42:], 32)
		le.PutUint16(ehdr[44:], phnum)
		le.PutUint16(ehdr[46:], 40)
		phsize = 32
	}
	b := bytes.NewBuffer(ehdr)
	for i := range phnum {
		ph := make([]byte, phsize)
		le.PutUint32(ph[0:], 1) // PT_LOAD
		if i == 2 {
			le.PutUint32(ph[0:], 0x6474e551) // PT_GNU_STACK
		}
		if bits == 64 {
			le.PutUint32(ph[4:], 7) // RWX
		} else {
			le.PutUint32(ph[24:], 7)
		}
		b.Write(ph)
	}
	return b.Bytes()
}

// scramble stands in for compression: it hides every string of p.
func scramble(p []byte) []byte {
	out := make([]byte, len(p))
	x := uint32(0x9e3779b9)
	for i, c := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		out[i] = c ^ byte(x)
	}
	return out
}
