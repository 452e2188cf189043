/*
 * Miner command lines and droppers in scripts, service files and crontabs.
 *
 * Indicators are spelled with escapes so pullgate's own binary does not
 * match them (see miners.yar). The command-line regexes start from a
 * literal option (" -o ", "--url", "-pool") so YARA only runs them where
 * that literal is.
 */

rule MinerStratumScript
{
    meta:
        category = "miner"
        severity = "high"
        description = "stratum mining pool URL in a script, service file or crontab"
    strings:
        $url = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)[A-Za-z0-9\[]/
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
        $url = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)[A-Za-z0-9\[]/
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
        $cli = /(^|[\s"'])(-o|--url[= ]?)\s*([a-z0-9+]{3,20}:\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{2,100}:[0-9]{2,5}[\s"',]([^\n]{0,300}[\s"'])?(-u|--user[= ]?)\s*[0-9A-Za-z][0-9A-Za-z._+\-]{29,}/
        $gpu = /(^|[\s"'])(-pool|--pool)[= ]\s*([a-z0-9+]{3,20}:\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{2,100}:[0-9]{2,5}[\s"',]([^\n]{0,300}[\s"'])?(-wal|--wallet|--user|-u)[= ]\s*(0x[0-9a-fA-F]{40}|[0-9A-Za-z][0-9A-Za-z._+\-]{29,})/
        $donate = "--donate\x2dlevel"
        $st = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)/
    condition:
        $cli or $gpu or ($donate and $st)
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
        $m2 = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)/
        $m3 = "--donate\x2dlevel"
        $m4 = "mine\x72d" fullword
        $m5 = "cpumine\x72" fullword
        $m6 = "xmr\x2dstak" nocase
        $m7 = "kdevtmpf\x73i"
        $m8 = "ccmine\x72" fullword
    condition:
        ScriptLike and ($curl or $wget) and $chmod and any of ($m*)
}

rule DropperMinerKiller
{
    meta:
        category = "dropper"
        severity = "high"
        description = "script that kills rival cryptominers and prepares the host for its own (download, huge pages, cron)"
    strings:
        $kill = /(pkill|killall|kill -9|xargs kill)[^\n]{0,120}(xmr\x69g|kdevtmpf\x73i|kins\x69ng|mine\x72d|cpumine\x72|xmr\x2dstak|cryptonigh\x74|stratum)/ nocase
        $grep = /grep[^\n]{0,80}(xmr\x69g|kdevtmpf\x73i|kins\x69ng|mine\x72d|cpumine\x72|stratum)[^\n]{0,120}(kill|pkill)/ nocase
        $dl1  = "curl " fullword
        $dl2  = "wget " fullword
        $hp   = "nr_hugepage\x73"
        $cron = "cronta\x62"
        $chat = "chattr -\x69"
    condition:
        ScriptLike and ($kill or $grep) and any of ($dl*, $hp, $cron, $chat)
}

rule MinerTuningScript
{
    meta:
        category = "miner"
        severity = "medium"
        description = "script that tunes the host for RandomX mining (huge pages and MSR writes)"
    strings:
        $hp  = "nr_hugepage\x73"
        $msr = "modprobe ms\x72"
        $wr1 = /wrmsr\s+(-a\s+)?0x(c0011020|c0011021|c0011022|c001102b|1a4)/ nocase
    condition:
        ScriptLike and $hp and ($msr or $wr1)
}

rule DropperCronDownload
{
    meta:
        category = "dropper"
        severity = "medium"
        description = "cron entry that downloads a script and pipes it to a shell"
    strings:
        $pipe = /(\*|[0-9]+)\/?[0-9]*(\s+\S+){4}\s+[^\n]{0,80}(curl|wget)\s[^\n]{1,200}\|\s*(ba)?sh\b/
    condition:
        context == "layer" and $pipe and
        (filepath matches /^\/(etc\/cron|var\/spool\/cron|etc\/crontab)/ or filename == "crontab" or filename == "root")
}
