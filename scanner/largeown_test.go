package scanner

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// A compressed file over the scan window is searched behind its start as
// one in a window is: a later gzip member's header fields, a skippable
// frame between zstd frames, and a later member, frame or stream whose
// output starts as a program, each cut out by tail -c.
func TestLargeCompressedFilesSearchedBehindTheirStart(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	filler := samples.Filler(big)
	miner := gzipBytes(t, samples.XMRig())
	notes := []byte("release notes\n")
	bigGzip, bigZstd := gzipBytes(t, filler), zstdBytes(t, filler)
	bigXz := cli(t, filler, "xz", "-c", "-0")
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name, ext, tool string
		data            []byte
		off             int    // where what the host cuts out starts
		inner           string // the format it is cut out in
	}{
		{"gzip in a later member's extra field", "gz", "gzip", join(bigGzip, gzipExtraOf(gzipBytes(t, notes), miner)), len(bigGzip) + 12, "gzip"},
		{"a later gzip member that is a program", "gz", "gzip", join(bigGzip, miner), len(bigGzip), "gzip"},
		{"gzip in a skippable frame between zstd frames", "zst", "gzip", join(bigZstd, skippable(miner), zstdBytes(t, notes)), len(bigZstd) + 8, "gzip"},
		{"a later zstd frame that is a program", "zst", "zstd", join(bigZstd, zstdBytes(t, samples.XMRig())), len(bigZstd), "zstd"},
		{"a later xz stream that is a program", "xz", "xz", join(bigXz, cli(t, samples.XMRig(), "xz", "-c")), len(bigXz), "xz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := hostCut(t, c.data, fmt.Sprintf("tail -c +%d $F | %s -dc 2>/dev/null", c.off+1, c.tool)); !bytes.Equal(got, samples.XMRig()) {
				t.Fatalf("tail -c | %s -dc does not give the miner: the case is wrong", c.tool)
			}
			res, err := scanOne(t, s, tfile{name: "opt/data." + c.ext, mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if p := fmt.Sprintf("/opt/data.%s!%s@%d!%[2]s", c.ext, c.inner, c.off); !hasFinding(res.Findings, "MinerXMRig", p) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, p)
			}
		})
	}
}

// A large compressed file of many members or frames, none holding
// anything, gives no finding, and its own are not read again.
func TestLargeCompressedFilesOwnNotReadAgain(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	var gz, zst [][]byte
	for i := range 64 {
		part := samples.Filler(big/64 + i)
		gz = append(gz, gzipBytes(t, part))
		zst = append(zst, zstdBytes(t, part))
	}
	for _, f := range []tfile{
		{name: "opt/many.gz", mode: 0o644, data: bytes.Join(gz, nil)},
		{name: "opt/many.zst", mode: 0o644, data: bytes.Join(zst, nil)},
	} {
		res, err := scanOne(t, s, f)
		if err != nil {
			t.Fatalf("ScanLayer %s: %v", f.name, err)
		}
		if len(res.Findings) > 0 {
			t.Fatalf("%s: findings %v", f.name, res.Findings)
		}
		// The file, its output, and the trials: not its output twice.
		if limit := int64(len(f.data) + big + big/2); res.Bytes > limit {
			t.Fatalf("%s: %d bytes scanned, more than %d: its own read again", f.name, res.Bytes, limit)
		}
	}
}
