package scanner

import (
	"bytes"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// oldGzip gives a gzip member the magic gzip 0.5 wrote, 1f 9e.
func oldGzip(m []byte) []byte {
	m = bytes.Clone(m)
	m[1] = 0x9e
	return m
}

// A gzip member with gzip 0.5's magic is read as gzip -d reads it: as a
// file of its own, after another member (joined), behind a script, and
// as a compressed tar (tar xzf runs gzip -d).
func TestOldGzipMagic(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	half := len(miner) / 2
	head := "#!/bin/sh\ntail -c +59 \"$0\" | gzip -dc > /tmp/k; exec /tmp/k\n"
	cases := []struct {
		name string
		data []byte
		want []byte // what gzip -dc writes
	}{
		{"alone", oldGzip(gzipBytes(t, miner)), miner},
		{"after a member", slices.Concat(gzipBytes(t, []byte("a changelog\n")), oldGzip(gzipBytes(t, miner))), append([]byte("a changelog\n"), miner...)},
		{"split over two members", slices.Concat(gzipBytes(t, miner[:half]), oldGzip(gzipBytes(t, miner[half:]))), miner},
		{"behind a script", append([]byte(head), oldGzip(gzipBytes(t, miner))...), nil},
		{"a tar", oldGzip(gzipBytes(t, tarLayer(t, tfile{name: "xmrig", mode: 0o755, data: miner}))), nil},
	}
	for _, c := range cases {
		if c.want != nil {
			if got := toolOutput("gzip", c.data); !bytes.Equal(got, c.want) {
				t.Fatalf("%s: gzip -dc writes %d bytes, not the miner", c.name, len(got))
			}
		}
		res, err := scanOne(t, s, tfile{name: "opt/x", mode: 0o755, data: c.data})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingIn(res.Findings, "MinerXMRig") {
			t.Errorf("%s: findings %v, want MinerXMRig inside it", c.name, res.Findings)
		}
	}
}
