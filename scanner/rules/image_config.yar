/*
 * Rules for image configs (context "config"): Entrypoint, Cmd, Env,
 * Labels and history are scanned as text with filepath "config:<field>".
 */

rule MinerInImageConfig
{
    meta:
        category = "miner"
        severity = "high"
        description = "cryptominer command line in the image config (stratum URL or donate level)"
    strings:
        $donate = "--donate\x2dlevel"
        $st     = /stratum[0-9]?\+(tcp|ssl|tls):\/\//
    condition:
        context == "config" and ($donate or $st)
}

rule MinerNameInImageConfig
{
    meta:
        category = "miner"
        severity = "medium"
        description = "image config starts or installs a program named like a miner"
    strings:
        $xmr   = "xmr\x69g" nocase fullword
        $kdev  = "kdevtmpf\x73i" fullword
        $kins  = "kins\x69ng" fullword
        $cpum  = "cpuminer" fullword
        $minerd = "minerd" fullword
    condition:
        context == "config" and any of them
}
