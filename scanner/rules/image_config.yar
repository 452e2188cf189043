/*
 * Rules for image configs (context "config"): Entrypoint, Cmd, Env,
 * Labels and history are scanned as text with filepath "config:<field>".
 * MinerCommandLine (scripts.yar) applies here too.
 */

rule MinerInImageConfig
{
    meta:
        category = "miner"
        severity = "high"
        description = "cryptominer command line in the image config (stratum URL or donate level)"
    strings:
        $donate = "--donate\x2dlevel"
        $st     = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)/
    condition:
        context == "config" and ($donate or $st)
}

rule MinerDownloadInImageConfig
{
    meta:
        category = "dropper"
        severity = "high"
        description = "image build step that downloads and starts a cryptominer"
    strings:
        $dl = /(curl|wget)\s[^\n]{0,300}(xmr\x69g|xmr\x2dstak|cpumine\x72|mine\x72d|ccmine\x72|ethmine\x72|lolMine\x72|nbmine\x72|PhoenixMine\x72|SRBMine\x72|nanomine\x72|t\x2drex)[^\n]{0,300}(chmod|tar |unzip|\.\/|\bsh\b)/ nocase
    condition:
        context == "config" and $dl
}

rule MinerNameInImageConfig
{
    meta:
        category = "miner"
        severity = "medium"
        description = "image config starts or installs a program named like a miner"
    strings:
        $xmr    = "xmr\x69g" nocase fullword
        $stak   = "xmr\x2dstak" nocase fullword
        $kdev   = "kdevtmpf\x73i" fullword
        $kins   = "kins\x69ng" fullword
        $cpum   = "cpumine\x72" fullword
        $mnrd   = "mine\x72d" fullword
        $cc     = "ccmine\x72" fullword
        $eth    = "ethmine\x72" fullword
        $lol    = "lolMine\x72" nocase fullword
        $nb     = "nbmine\x72" nocase fullword
        $srb    = "SRBMine\x72" nocase
        $phx    = "PhoenixMine\x72" nocase fullword
        $nano   = "nanomine\x72" nocase fullword
    condition:
        context == "config" and any of them
}
