/*
 * Cryptominer executables.
 *
 * Indicator strings are spelled with \x escapes (\x2b is "+", \x2d is "-",
 * \x69 is "i") so that pullgate's own binary, which embeds these sources,
 * does not carry the indicators it looks for.
 */

rule MinerXMRig
{
    meta:
        category = "miner"
        severity = "high"
        description = "XMRig cryptominer"
    strings:
        $ua         = "XMR\x69g/%s"
        $donate_v2  = "donate.v2.xmr\x69g.com" nocase
        $donate_ssl = "donate.ssl.xmr\x69g.com" nocase
        $opt_donate = "--donate\x2dlevel"
        $name       = "xmr\x69g" nocase fullword
        $rx         = "random\x78" nocase fullword
        $cn         = "cryptonigh\x74" nocase
        $st_tcp     = "stratum\x2btcp://"
        $st_ssl     = "stratum\x2bssl://"
    condition:
        executable and (
            $ua or $donate_v2 or $donate_ssl or
            ($opt_donate and any of ($name, $rx, $cn, $st_*)) or
            3 of ($name, $rx, $cn, $st_*)
        )
}

rule MinerStratumExecutable
{
    meta:
        category = "miner"
        severity = "high"
        description = "executable with a built-in stratum mining pool URL"
    strings:
        $url = /stratum[0-9]?\+(tcp|ssl|tls):\/\/[A-Za-z0-9\[]/
    condition:
        executable and context == "layer" and $url and not ScriptLike
}

rule MinerProtocolExecutable
{
    meta:
        category = "miner"
        severity = "high"
        description = "executable speaking the stratum mining protocol with a CPU mining algorithm"
    strings:
        $subscribe = "mining.subscrib\x65"
        $authorize = "mining.authoriz\x65"
        $submit    = "mining.submi\x74"
        $rx        = "random\x78" nocase fullword
        $cn        = "cryptonigh\x74" nocase
        $argon     = "argon2/chukw\x61" nocase
        $ghost     = "ghostrid\x65r" nocase
    condition:
        executable and 2 of ($subscribe, $authorize, $submit) and any of ($rx, $cn, $argon, $ghost)
}

rule MinerXMRigName
{
    meta:
        category = "miner"
        severity = "medium"
        description = "executable named like XMRig (name only; content not confirmed)"
    condition:
        executable and context == "layer" and filename matches /^xmr\x69g/i
}
