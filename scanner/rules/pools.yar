/*
 * Weak indicators: mining pool host names and wallet addresses. Alone they
 * never block an image (severity low); they explain and corroborate. A
 * wallet address counts as evidence next to a packed executable (see
 * Policy in scanner/policy.go); a pool host name never does, because DNS
 * blocklists name them all.
 */

rule MiningPoolDomain
{
    meta:
        category = "pool"
        severity = "low"
        description = "known cryptocurrency mining pool host name"
    strings:
        $p1  = "minexmr.com" nocase
        $p2  = "supportxmr.com" nocase
        $p3  = "nanopool.org" nocase
        $p4  = "moneroocean.stream" nocase
        $p5  = "c3pool.com" nocase
        $p6  = "hashvault.pro" nocase
        $p7  = "herominers.com" nocase
        $p8  = "unmineable.com" nocase
        $p9  = "minergate.com" nocase
        $p10 = "2miners.com" nocase
        $p11 = "f2pool.com" nocase
        $p12 = "xmrpool.eu" nocase
        $p13 = "dwarfpool.com" nocase
        $p14 = "monerohash.com" nocase
        $p15 = "crypto-pool.fr" nocase
        $p16 = "xmr.pool.gntl.co.uk" nocase
        $p17 = "nicehash.com" nocase
        $p18 = "donate.v2.xmr\x69g.com" nocase
        $p19 = "ethermine.org" nocase
        $p20 = "flexpool.io" nocase
        $p21 = "hiveon.net" nocase
        $p22 = "zergpool.com" nocase
        $p23 = "miningpoolhub.com" nocase
        $p24 = "prohashing.com" nocase
        $p25 = "woolypooly.com" nocase
        $p26 = "kryptex.network" nocase
        $p27 = "zpool.ca" nocase
        $p28 = "rplant.xyz" nocase
        $p29 = "moneropool.com" nocase
        $p30 = "skypool.org" nocase
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
