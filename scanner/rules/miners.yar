/*
 * Cryptominer executables.
 *
 * Indicator strings are spelled with \x escapes (\x2b is "+", \x2d is "-",
 * \x69 is "i", \x65 is "e") so that pullgate's own binary, which embeds
 * these sources, does not carry the indicators it looks for.
 *
 * Every string here has a fixed run of at least four bytes, so YARA can
 * find it by a good atom; regular expressions start from a literal.
 */

rule MinerXMRig
{
    meta:
        category = "miner"
        severity = "high"
        description = "XMRig cryptominer (2.x to 6.x)"
    strings:
        $ua         = "XMR\x69g/%s"
        $ua2        = "XMR\x69g/2."
        $donate_v2  = "donate.v2.xmr\x69g.com" nocase
        $donate_ssl = "donate.ssl.xmr\x69g.com" nocase
        $donate_old = "donate.xmr\x69g.com" nocase
        $opt_donate = "--donate\x2dlevel"
        $name       = "xmr\x69g" nocase fullword
        $rx         = "random\x78" nocase fullword
        $cn         = "cryptonigh\x74" nocase
        $st_tcp     = "stratum\x2btcp://"
        $st_ssl     = "stratum\x2bssl://"
    condition:
        executable and (
            $ua or $ua2 or $donate_v2 or $donate_ssl or $donate_old or
            ($opt_donate and any of ($name, $rx, $cn, $st_*)) or
            3 of ($name, $rx, $cn, $st_*)
        )
}

rule MinerXMRigInternals
{
    meta:
        category = "miner"
        severity = "high"
        description = "XMRig-derived miner with its name and donate strings removed (XMRig option names and algorithms)"
    strings:
        $o1 = "donate\x2dover-proxy"
        $o2 = "huge-pages\x2djit"
        $o3 = "max-threads\x2dhint"
        $o4 = "submit-to\x2dorigin"
        $o5 = "daemon-poll\x2dinterval"
        $o6 = "health-print\x2dtime"
        $o7 = "random\x78-1gb-pages" nocase
        $o8 = "rebench\x2dalgo"
        $o9 = "cpu-max\x2dthreads-hint"
        $a1 = "rx/wo\x77"
        $a2 = "cn/ha\x6cf"
        $a3 = "argon2/chukwa\x76"
        $a4 = "cn-pic\x6f"
        $a5 = "ghostride\x72"
    condition:
        executable and 3 of ($o*) and any of ($a*)
}

rule MinerXMRStak
{
    meta:
        category = "miner"
        severity = "high"
        description = "xmr\x2dstak cryptominer"
    strings:
        $name   = "xmr\x2dstak" nocase
        $auth1  = "fireice\x5fuk"
        $auth2  = "psychocryp\x74"
        $pool   = "pool_addres\x73"
        $wallet = "wallet_addres\x73"
        $cn     = "cryptonigh\x74" nocase
        $st     = "stratum\x2btcp://"
    condition:
        executable and ($name or $auth1 or $auth2) and 2 of ($pool, $wallet, $cn, $st, $auth*)
}

rule MinerCPUMiner
{
    meta:
        category = "miner"
        severity = "high"
        description = "cpu\x6diner family cryptominer (\x6dinerd, cpu\x6diner, cpu\x6diner-opt, cpu\x6diner-multi)"
    strings:
        $b1 = "cpumine\x72" nocase
        $b2 = "Usage: mine\x72d"
        $b3 = "mine\x72d" fullword
        $b4 = "JayDDe\x65"
        $b5 = "cpumine\x72-opt" nocase
        $b6 = "cpumine\x72-multi" nocase
        $p1 = "mining.subscrib\x65"
        $p2 = "mining.authoriz\x65"
        $p3 = "stratum\x2btcp://"
        $p4 = "--coinbase\x2daddr"
        $p5 = "--algo=ALG\x4f"
        $p6 = "getwor\x6b" fullword
    condition:
        executable and any of ($b*) and 2 of ($p*)
}

rule MinerGPU
{
    meta:
        category = "miner"
        severity = "high"
        description = "GPU cryptominer (cc\x6diner, cg\x6diner, bfg\x6diner, eth\x6diner, lol\x4diner, T\x2dRex, NB\x4diner, Phoenix\x4diner, G\x4diner, nano\x6diner, SRB\x4diner, TeamRed\x4diner)"
    strings:
        $b1  = "ccmine\x72" nocase
        $b2  = "cgmine\x72" nocase
        $b3  = "bfgmine\x72" nocase
        $b4  = "ethmine\x72" nocase
        $b5  = "lolMine\x72" nocase
        $b6  = "T-Re\x78 "
        $b7  = "NBMine\x72" nocase
        $b8  = "PhoenixMine\x72" nocase
        $b9  = "GMine\x72" fullword
        $b10 = "nanomine\x72" nocase
        $b11 = "SRBMine\x72" nocase
        $b12 = "teamredmine\x72" nocase
        $p1  = "mining.subscrib\x65"
        $p2  = "mining.authoriz\x65"
        $p3  = "stratum\x2btcp://"
        $p4  = "stratum\x2bssl://"
        $p5  = "stratum1\x2btcp://"
        $p6  = "ethas\x68" fullword nocase
        $p7  = "kawpo\x77" fullword nocase
        $p8  = "autolyko\x73" nocase
        $p9  = "etchas\x68" fullword nocase
        $p10 = "eth_submitWor\x6b"
        $p11 = "getwor\x6b" fullword
    condition:
        executable and any of ($b*) and 2 of ($p*)
}

rule MinerStratumExecutable
{
    meta:
        category = "miner"
        severity = "high"
        description = "executable with a built-in stratum mining pool URL"
    strings:
        $url = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)[A-Za-z0-9\[]/
    condition:
        executable and context == "layer" and $url and not ScriptLike
}

rule MinerProtocolExecutable
{
    meta:
        category = "miner"
        severity = "high"
        description = "executable speaking the stratum mining protocol with a mining algorithm"
    strings:
        $subscribe = "mining.subscrib\x65"
        $authorize = "mining.authoriz\x65"
        $submit    = "mining.submi\x74"
        $rx        = "random\x78" nocase fullword
        $cn        = "cryptonigh\x74" nocase
        $argon     = "argon2/chukw\x61" nocase
        $ghost     = "ghostrid\x65r" nocase
        $eth_hash  = "ethas\x68" fullword nocase
        $kaw_pow   = "kawpo\x77" fullword nocase
        $scrypt    = "scrypt:\x4e"
    condition:
        executable and 2 of ($subscribe, $authorize, $submit) and any of ($rx, $cn, $argon, $ghost, $eth_hash, $kaw_pow, $scrypt)
}

rule MinerNameExecutable
{
    meta:
        category = "miner"
        severity = "medium"
        description = "executable named like a known cryptominer (name only; content not confirmed)"
    condition:
        executable and context == "layer" and
        filename matches /^(xmr\x69g|xmr\x2dstak|mine\x72d$|cpumine\x72|ccmine\x72|cgmine\x72|bfgmine\x72|ethmine\x72|lolMine\x72|t\x2drex$|nbmine\x72|PhoenixMine\x72|nanomine\x72|SRBMine\x72|teamredmine\x72)/i
}
