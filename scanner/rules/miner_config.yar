/*
 * Miner configuration files: XMRig-style config.json (current and the
 * 2018 commented format), xmr\x2dstak's pool list, CPU and GPU miners' JSON
 * configs and INI-style configs with wallet and pool lines.
 */

rule MinerXMRigConfig
{
    meta:
        category = "miner-config"
        severity = "high"
        description = "XMRig-style miner configuration (pools with url and user)"
    strings:
        $pools  = "\"pool\x73\""
        $url    = "\"ur\x6c\""
        $user   = "\"use\x72\""
        $donate = "\"donate\x2dlevel\""
        $rx     = "\"random\x78\""
        $cpu    = "\"cp\x75\""
        $algo   = "\"alg\x6f\""
        $rig    = "\"rig\x2did\""
        $nh     = "\"niceha\x73h\""
        $keep   = "\"keepaliv\x65\""
        $coin   = "\"coi\x6e\""
        $av     = "\"a\x76\":"
        $maxcpu = "\"max-cpu\x2dusage\""
        $aff    = "\"cpu-affinit\x79\""
        $st     = /stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)/
    condition:
        not (uint32(0) == 0x464c457f) and $pools and $url and $user and
        ($donate or $st or 3 of ($rx, $cpu, $algo, $rig, $nh, $keep, $coin, $av, $maxcpu, $aff))
}

rule MinerXMRStakConfig
{
    meta:
        category = "miner-config"
        severity = "high"
        description = "xmr\x2dstak miner pool configuration (a pool list with wallet addresses)"
    strings:
        $list   = "\"pool_lis\x74\""
        $pool   = "\"pool_addres\x73\""
        $wallet = "\"wallet_addres\x73\""
    condition:
        not (uint32(0) == 0x464c457f) and all of them
}

rule MinerStratumConfig
{
    meta:
        category = "miner-config"
        severity = "high"
        description = "miner configuration (CPU and GPU miners): stratum URL with user and algorithm"
    strings:
        $url  = /"(url|pool)"\s*:\s*"stratum[0-9]?(\+tcp:\/\/|\+ssl:\/\/|\+tls:\/\/)/
        $user = /"(user|userpass|wallet)"\s*:\s*"/
        $algo = /"(algo|algorithm)"\s*:\s*"/
    condition:
        not (uint32(0) == 0x464c457f) and all of them
}

rule MinerIniConfig
{
    meta:
        category = "miner-config"
        severity = "high"
        description = "INI-style miner configuration (wallet and pool1 entries)"
    strings:
        $wallet = /(^|\n)\s*wallet\s*=\s*(0x[0-9a-fA-F]{40}|[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93})/
        $pool   = /(^|\n)\s*pool1\s*=\s*[A-Za-z0-9.\-]+:[0-9]{2,5}/
    condition:
        not (uint32(0) == 0x464c457f) and $wallet and $pool
}
