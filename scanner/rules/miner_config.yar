/*
 * Miner configuration files (XMRig config.json and relatives).
 */

rule MinerXMRigConfig
{
    meta:
        category = "miner-config"
        severity = "high"
        description = "XMRig-style miner configuration (pools with url/user)"
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
        $st     = /stratum[0-9]?\+(tcp|ssl|tls):\/\//
    condition:
        not (uint32(0) == 0x464c457f) and $pools and $url and $user and
        ($donate or $st or 3 of ($rx, $cpu, $algo, $rig, $nh, $keep, $coin))
}
