/*
 * Packers miners hide behind. Packing alone is common enough in legitimate
 * software that it never blocks.
 */

rule PackerUPX
{
    meta:
        category = "packer"
        severity = "low"
        description = "UPX-packed ELF executable (often used to hide miners)"
    strings:
        $upx = "UPX!"
    condition:
        uint32(0) == 0x464c457f and $upx in (0..4096)
}
