package scanner

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// An .lzma file whose header asks for a dictionary larger than xz's
// largest (64 MiB), which unlzma, lzcat and bsdtar read all the same, is
// read with 64 MiB (outside attack round 22, F3).
func TestLzmaLargeDictionaryRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	withDict := func(st []byte, dict uint32) []byte {
		st = bytes.Clone(st)
		binary.LittleEndian.PutUint32(st[1:5], dict)
		return st
	}
	big := "--lzma1=preset=6,dict=128MiB"
	for _, c := range []struct {
		name string
		data []byte
		want []byte // what xz -dc writes
	}{
		{"dict 128 MiB", cli(t, miner, "xz", "--format=lzma", big, "-c"), miner},
		{"dict 2^32-1", withDict(cli(t, miner, "xz", "--format=lzma", "-c"), 0xffffffff), miner},
		{"dict 3 GiB", withDict(cli(t, miner, "xz", "--format=lzma", "-c"), 0xc0000000), miner},
		{"dict 4 KiB", cli(t, miner, "xz", "--format=lzma", "--lzma1=preset=6,dict=4KiB", "-c"), miner},
		{"a tar", cli(t, tarLayer(t, tfile{name: "xmrig", mode: 0o755, data: miner}), "xz", "--format=lzma", big, "-c"), nil},
	} {
		if c.want != nil {
			if got := cli(t, c.data, "xz", "-dc", "--format=lzma"); !bytes.Equal(got, c.want) {
				t.Fatalf("%s: xz -dc writes %d bytes, not the miner", c.name, len(got))
			}
		}
		head := "#!/bin/sh\ntail -c +46 \"$0\" | lzcat > /tmp/k; exec /tmp/k\n"
		for _, f := range []tfile{
			{name: "opt/x.lzma", mode: 0o644, data: c.data},
			// Behind a script: with a dictionary of 2^32-1, the first
			// NUL after the text is the range coder's (round 22b, F5).
			{name: "opt/run.sh", mode: 0o755, data: append([]byte(head), c.data...)},
		} {
			res, err := scanOne(t, s, f)
			if err != nil {
				t.Fatalf("%s, %s: %v", c.name, f.name, err)
			}
			if !hasFindingIn(res.Findings, "MinerXMRig") {
				t.Errorf("%s, %s: findings %v, want MinerXMRig inside it", c.name, f.name, res.Findings)
			}
		}
	}
}
