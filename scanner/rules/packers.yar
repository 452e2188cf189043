/*
 * Packers miners hide behind. A packed executable alone only warns
 * (plenty of Go tools ship UPX-packed); Policy.Decide counts it as
 * evidence together with a wallet address or a medium finding in the
 * same image (docs/detection.md).
 *
 * UPX lays out a packed ELF as: the ELF header, its program headers (no
 * section headers), then l_info {checksum u32, magic "UPX!" u32, loader
 * size u16, version u8, format u8} and p_info {progid u32 = 0, original
 * file size u32, block size u32 <= file size}. The layout is recognised
 * whatever the magic says, so a mark rewritten to hide the packer is
 * found too.
 */

private rule UPXLayout64
{
    condition:
        uint32(0) == 0x464c457f and uint8(4) == 2 and uint8(5) == 1 and
        uint16(0x3c) == 0 and uint32(0x28) == 0 and uint32(0x2c) == 0 and
        uint16(0x36) == 56 and uint16(0x38) >= 2 and uint16(0x38) <= 8 and
        uint32(0x24) == 0 and uint32(0x20) == 64 and
        uint8(64 + uint16(0x38) * 56 + 10) >= 11 and uint8(64 + uint16(0x38) * 56 + 10) <= 15 and
        uint8(64 + uint16(0x38) * 56 + 11) >= 10 and uint8(64 + uint16(0x38) * 56 + 11) <= 45 and
        uint16(64 + uint16(0x38) * 56 + 8) >= 0x100 and uint16(64 + uint16(0x38) * 56 + 8) <= 0x8000 and
        uint32(64 + uint16(0x38) * 56 + 12) == 0 and
        uint32(64 + uint16(0x38) * 56 + 20) > 0 and
        uint32(64 + uint16(0x38) * 56 + 20) <= uint32(64 + uint16(0x38) * 56 + 16)
}

private rule UPXLayout32
{
    condition:
        uint32(0) == 0x464c457f and uint8(4) == 1 and uint8(5) == 1 and
        uint16(0x30) == 0 and uint32(0x20) == 0 and
        uint16(0x2a) == 32 and uint16(0x2c) >= 2 and uint16(0x2c) <= 8 and
        uint32(0x1c) == 52 and
        uint8(52 + uint16(0x2c) * 32 + 10) >= 11 and uint8(52 + uint16(0x2c) * 32 + 10) <= 15 and
        uint8(52 + uint16(0x2c) * 32 + 11) >= 10 and uint8(52 + uint16(0x2c) * 32 + 11) <= 45 and
        uint16(52 + uint16(0x2c) * 32 + 8) >= 0x100 and uint16(52 + uint16(0x2c) * 32 + 8) <= 0x8000 and
        uint32(52 + uint16(0x2c) * 32 + 12) == 0 and
        uint32(52 + uint16(0x2c) * 32 + 20) > 0 and
        uint32(52 + uint16(0x2c) * 32 + 20) <= uint32(52 + uint16(0x2c) * 32 + 16)
}

rule PackerUPX
{
    meta:
        category = "packer"
        severity = "low"
        description = "UPX-packed ELF executable (packing hides what a binary contains; often used to hide miners)"
    strings:
        $mark = "UPX!"
        $info = "This file is packed with the UP\x58"
    condition:
        uint32(0) == 0x464c457f and context == "layer" and (
            (UPXLayout64 and uint32(64 + uint16(0x38) * 56 + 4) == 0x21585055) or
            (UPXLayout32 and uint32(52 + uint16(0x2c) * 32 + 4) == 0x21585055) or
            $mark in (0..4096) or $info in (0..16384)
        )
}

rule PackerUPXAltered
{
    meta:
        category = "packer"
        severity = "medium"
        description = "UPX-packed ELF executable whose UPX marks were altered to hide the packer (an anti-analysis trick of malware)"
    condition:
        context == "layer" and (
            (UPXLayout64 and uint32(64 + uint16(0x38) * 56 + 4) != 0x21585055) or
            (UPXLayout32 and uint32(52 + uint16(0x2c) * 32 + 4) != 0x21585055)
        )
}
