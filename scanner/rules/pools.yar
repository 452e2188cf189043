/*
 * Weak indicators: mining pool host names and wallet addresses. Alone they
 * never block an image (severity low); they explain and corroborate. A
 * wallet address counts as evidence next to a packed executable (see
 * Policy in scanner/policy.go); a pool host name never does, because DNS
 * blocklists name them all.
 *
 * Host names are matched as written (lower case), not nocase: pool host
 * names are lower case in configs, scripts and binaries, and nocase on
 * thirty strings cost a tenth of the whole ruleset's scan time on a Debian
 * root filesystem (yara -p 1 over /usr/bin: 1.42 s against 1.26 s).
 */

rule MiningPoolDomain
{
    meta:
        category = "pool"
        severity = "low"
        description = "known cryptocurrency mining pool host name"
    strings:
        $p1  = "minexmr.com"
        $p2  = "supportxmr.com"
        $p3  = "nanopool.org"
        $p4  = "moneroocean.stream"
        $p5  = "c3pool.com"
        $p6  = "hashvault.pro"
        $p7  = "herominers.com"
        $p8  = "unmineable.com"
        $p9  = "minergate.com"
        $p10 = "2miners.com"
        $p11 = "f2pool.com"
        $p12 = "xmrpool.eu"
        $p13 = "dwarfpool.com"
        $p14 = "monerohash.com"
        $p15 = "crypto-pool.fr"
        $p16 = "xmr.pool.gntl.co.uk"
        $p17 = "nicehash.com"
        $p18 = "donate.v2.xmr\x69g.com"
        $p19 = "ethermine.org"
        $p20 = "flexpool.io"
        $p21 = "hiveon.net"
        $p22 = "zergpool.com"
        $p23 = "miningpoolhub.com"
        $p24 = "prohashing.com"
        $p25 = "woolypooly.com"
        $p26 = "kryptex.network"
        $p27 = "zpool.ca"
        $p28 = "rplant.xyz"
        $p29 = "moneropool.com"
        $p30 = "skypool.org"
    condition:
        any of them
}

rule MoneroWalletAddress
{
    meta:
        category = "wallet"
        severity = "low"
        description = "Monero wallet address given to a miner (user, wallet or login)"
    strings:
        $w = /(-u |-u=|--user[= ]|"user": ?"|WALLET=|wallet=|WALLET_ADDRESS=|"wallet": ?"|"wallet_addres\x73" ?: ?"|monero:)[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93}/
    condition:
        $w
}

rule EthereumWalletLogin
{
    meta:
        category = "wallet"
        severity = "low"
        description = "Ethereum-style wallet address given to a miner as its login"
    strings:
        $w = /(-u |-wal |--user[= ]|--wallet[= ]|"user": ?"|"wallet": ?"|WALLET=|wallet=)0x[0-9a-fA-F]{40}/
    condition:
        $w
}
