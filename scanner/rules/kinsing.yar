/*
 * Kinsing (H2Miner) style implants: a miner named like a kernel thread
 * (kdevtmpfs + "i"), a Go loader named after the family, usually dropped
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

rule KinsingGoLoader
{
    meta:
        category = "dropper"
        severity = "high"
        description = "Kinsing-style Go loader (C2 polling, masscan spreading, miner watchdog), whatever its name"
    strings:
        $f1 = "main.minerRunningChec\x6b"
        $f2 = "main.downloadAndExecut\x65"
        $f3 = "main.masscan"
        $f4 = "main.backconnec\x74"
        $f5 = "main.getActiveC2CUr\x6c"
        $f6 = "main.getMinerPi\x64"
        $f7 = "main.isHostAlreadyScanne\x64"
        $f8 = "main.runTaskWithScan"
    condition:
        uint32(0) == 0x464c457f and 3 of them
}
