/*
 * Weak indicators: mining pool host names and wallet addresses. Alone they
 * never block an image (severity low); they explain and corroborate.
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
    condition:
        any of them
}

rule MoneroWalletAddress
{
    meta:
        category = "wallet"
        severity = "low"
        description = "Monero wallet address"
    strings:
        $w = /(-u |-u=|--user[= ]|"user": ?"|WALLET=|wallet=|WALLET_ADDRESS=|"wallet": ?"|monero:)[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93}/
    condition:
        $w
}
