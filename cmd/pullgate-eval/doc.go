// Command pullgate-eval measures the default ruleset on a labelled corpus
// and prints, per rule and overall, true and false positives per file and
// per image, and throughput.
//
// Positives are synthetic and harmless (internal/samples): files carrying
// the indicators of each family, configs, scripts and command lines, each
// case packed as a layer in tar, gzip and zstd; and Go programs packed by a
// real UPX (internal/upx). Negatives are real: this
// machine's /usr, a Debian bookworm root filesystem made with debootstrap,
// and Debian packages that sit close to the line (a Monero node, Bitcoin
// wallets, RandomX, rootkit and virus scanners, a Go toolchain), fetched
// with apt-get download and unpacked with dpkg-deb. Everything fetched is
// cached under -cache. `make eval` runs it.
//
// It only measures: it never changes the rules, the store or any running
// pullgate, and it never fetches or keeps real malware.
package main
