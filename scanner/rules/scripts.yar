/*
 * Miner command lines and droppers in scripts, service files and crontabs.
 *
 * Indicators are spelled with escapes so pullgate's own binary does not
 * match them (see miners.yar).
 */

rule MinerStratumScript
{
    meta:
        category = "miner"
        severity = "high"
        description = "stratum mining pool URL in a script, service file or crontab"
    strings:
        $url = /stratum[0-9]?\+(tcp|ssl|tls):\/\/[A-Za-z0-9\[]/
    condition:
        context == "layer" and $url and ScriptLike
}

rule MinerStratumURL
{
    meta:
        category = "pool"
        severity = "medium"
        description = "stratum mining pool URL in a data file"
    strings:
        $url = /stratum[0-9]?\+(tcp|ssl|tls):\/\/[A-Za-z0-9\[]/
    condition:
        context == "layer" and $url and not ScriptLike and not executable
}

rule MinerCommandLine
{
    meta:
        category = "miner"
        severity = "high"
        description = "cryptominer command line: pool URL with a wallet login, or a donate level with a stratum URL"
    strings:
        $cli = /[\s"'](-o|--url[= ]?)\s*([a-z0-9+]{3,20}:\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{2,100}:[0-9]{2,5}[\s"',]([^\n]{0,300}[\s"'])?(-u|--user[= ]?)\s*[0-9A-Za-z][0-9A-Za-z._+\-]{29,}/
        $donate = "--donate\x2dlevel"
        $st = /stratum[0-9]?\+(tcp|ssl|tls):\/\//
    condition:
        $cli or ($donate and $st)
}

rule DropperMinerScript
{
    meta:
        category = "dropper"
        severity = "high"
        description = "script that downloads, makes executable and starts a cryptominer"
    strings:
        $curl  = "curl " fullword
        $wget  = "wget " fullword
        $chmod = /chmod\s+(\+x|[0-7]?7[0-7][0-7])/
        $m1 = "xmr\x69g" nocase
        $m2 = /stratum[0-9]?\+(tcp|ssl|tls):\/\//
        $m3 = "--donate\x2dlevel"
        $m4 = "minerd" fullword
        $m5 = "cpuminer" fullword
    condition:
        ScriptLike and ($curl or $wget) and $chmod and any of ($m*)
}
