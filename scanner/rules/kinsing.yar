/*
 * Kinsing (H2Miner) style implants: a miner named like a kernel thread
 * (kdevtmpfs + "i") and a loader named after the family, usually dropped
 * into /tmp by a shell script.
 */

rule KinsingBinary
{
    meta:
        category = "miner"
        severity = "high"
        description = "Kinsing (H2Miner) malware executable, known by its file name"
    condition:
        executable and context == "layer" and
        (filename == "kdevtmpf\x73i" or filename == "kins\x69ng" or filename matches /^kdevtmpf\x73i/)
}

rule KinsingDropper
{
    meta:
        category = "dropper"
        severity = "high"
        description = "script or loader that fetches, starts or kills the Kinsing (H2Miner) miner"
    strings:
        $cmd   = /(curl|wget|chmod|pkill|killall|nohup)[^\n]{0,200}(kdevtmpf\x73i|\/kins\x69ng\b)/
        $kdev  = "kdevtmpf\x73i"
        $kins  = "kins\x69ng" fullword
    condition:
        $cmd or (uint32(0) == 0x464c457f and $kdev and $kins)
}
