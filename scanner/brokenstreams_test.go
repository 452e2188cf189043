package scanner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// brokenStreams are the ways a compressed stream can be broken at its
// end that its tool still decodes: data after it, a cut trailer, a wrong
// checksum.
var brokenStreams = []struct {
	name   string
	break_ func(b []byte) []byte
}{
	{"whole", func(b []byte) []byte { return b }},
	{"data after it", func(b []byte) []byte { return append(slices.Clip(b), "exit 0\n# end of the installer\n"...) }},
	{"cut by 1", func(b []byte) []byte { return b[:len(b)-1] }},
	{"cut by 4", func(b []byte) []byte { return b[:len(b)-4] }},
	{"cut by 8", func(b []byte) []byte { return b[:len(b)-8] }},
	{"last byte wrong", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-1] ^= 0x55; return b }},
	{"fifth from last wrong", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-5] ^= 0x55; return b }},
}

// toolOutput is what tool -dc writes of stream, whatever it then says.
func toolOutput(tool string, stream []byte) []byte {
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin = bytes.NewReader(stream)
	out, _ := cmd.Output()
	return out
}

// A stream that its own tool writes out before it complains of the
// stream's end (gzip -dc, xz -dc, zstd -dc, bzip2 -dc piped to a shell) is
// read for what it writes: as a file of its own and behind a script's
// lines, a short dropper and a program alike. The tool is the ground
// truth: every case where it writes the whole payload is refused.
func TestBrokenStreamEndsRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	payloads := []struct {
		name, rule string
		data       []byte
	}{
		{"a dropper", "KinsingDropper", []byte(samples.KinsingDropper())},
		{"a miner", "MinerXMRig", samples.XMRig()},
		// Read past one batch (1 MiB) as a stream of unknown length.
		{"a dropper before 1.1 MB of comments", "KinsingDropper",
			append([]byte(samples.KinsingDropper()), bytes.Repeat([]byte(strings.Repeat("#", 999)+"\n"), 1100)...)},
	}
	tools := []struct{ tool, ext string }{{"gzip", "gz"}, {"xz", "xz"}, {"bzip2", "bz2"}, {"zstd", "zst"}}
	checked := 0
	for _, p := range payloads {
		for _, tl := range tools {
			stream := cli(t, p.data, tl.tool, "-c")
			for _, b := range brokenStreams {
				broken := b.break_(stream)
				if !bytes.Equal(toolOutput(tl.tool, broken), p.data) {
					continue // the host gets less than the payload
				}
				checked++
				name := fmt.Sprintf("%s/%s/%s", p.name, tl.tool, b.name)
				head := "# run with sh\ntail -c +59 \"$0\" | " + tl.tool + " -dc | sh\nexit 0\n"
				for _, f := range []tfile{
					{name: "opt/x." + tl.ext, mode: 0o644, data: broken},
					{name: "opt/run.sh", mode: 0o755, data: append([]byte(head), broken...)},
				} {
					res, err := scanOne(t, s, f)
					if err != nil {
						t.Fatalf("%s, %s: ScanLayer: %v", name, f.name, err)
					}
					if !hasFindingIn(res.Findings, p.rule) {
						t.Errorf("%s, %s: findings %v, want %s inside it", name, f.name, res.Findings, p.rule)
					}
				}
			}
		}
	}
	// whole and data after it for every tool, the cut and wrong
	// trailers gzip, xz and zstd write out.
	if checked < 20 {
		t.Fatalf("only %d broken streams written whole by their tools: the test looks at too few", checked)
	}
	t.Logf("%d broken streams written whole by their tools, each refused", checked)
}

// xzWithCheck is an xz stream of data whose check type is id: written
// with CRC-32, then its stream flags in the header and the footer set to
// id and their CRC-32s made again. xz unpacks it, only warning that it
// cannot verify a check of a type it does not know.
func xzWithCheck(t *testing.T, data []byte, id byte) []byte {
	t.Helper()
	b := bytes.Clone(cli(t, data, "xz", "-C", "crc32", "-c"))
	b[7] = id
	binary.LittleEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[6:8]))
	foot := b[len(b)-12:]
	foot[9] = id
	binary.LittleEndian.PutUint32(foot, crc32.ChecksumIEEE(foot[4:10]))
	return b
}

// xz streams that xz unpacks and the Go decoder cannot read: a check of
// a type xz does not know, a stream cut inside its compressed data (xz
// writes what it decoded up to the cut). Each is refused, as a file and
// behind a script.
func TestXzStreamsNotReadRefused(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	dropper := []byte(samples.KinsingDropper())
	whole := cli(t, dropper, "xz", "-c")
	for _, c := range []struct {
		name   string
		stream []byte
	}{
		{"a check of type 2", xzWithCheck(t, dropper, 2)},
		{"a check of type 11", xzWithCheck(t, dropper, 11)},
		{"cut inside its data", whole[:len(whole)*3/4]},
	} {
		if out := toolOutput("xz", c.stream); len(out) == 0 || !bytes.HasPrefix(dropper, out) {
			t.Fatalf("%s: xz -dc wrote %q, not the dropper's start", c.name, out)
		}
		for _, f := range []tfile{
			{name: "opt/x.xz", mode: 0o644, data: c.stream},
			{name: "opt/run.sh", mode: 0o755, data: append([]byte("# run with sh\ntail -c +40 \"$0\" | xz -dc | sh\n"), c.stream...)},
		} {
			res, err := scanOne(t, s, f)
			if err != nil {
				t.Fatalf("%s, %s: ScanLayer: %v", c.name, f.name, err)
			}
			found := false
			for _, fd := range res.Findings {
				found = found || fd.Rule == ArchiveUnreadableRule && fd.Severity == SeverityHigh
			}
			if !found {
				t.Errorf("%s, %s: findings %v, want ArchiveUnreadable (high)", c.name, f.name, res.Findings)
			}
		}
	}
}

// An .lzma stream damaged after its payload: xz, unlzma and lzcat write
// out what they decoded before the damage, payload and all, and then
// complain. The .lzma format has no magic number, so a stream that does
// not decode to its end is no proof of one; what was decoded is scanned
// all the same, as a file and behind a script.
func TestLzmaDamagedAfterItsPayloadRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	payload := append(samples.XMRig(), samples.Filler(300<<10)...)
	stream := cli(t, payload, "xz", "--format=lzma", "-c")
	damaged := map[string][]byte{"cut at three quarters": stream[:len(stream)*3/4]}
	for _, from := range []int{100, 5000, 50000} {
		b := bytes.Clone(stream)
		b[len(b)-from] ^= 0x55
		damaged[fmt.Sprintf("byte %d from the end", from)] = b
	}
	for name, b := range damaged {
		if out := toolOutput("lzcat", b); !bytes.HasPrefix(out, samples.XMRig()) {
			t.Fatalf("%s: lzcat writes %d bytes, not the miner", name, len(out))
		}
		head := "# run with sh\ntail -c +41 \"$0\" | lzcat | sh\nexit 0\n"
		for _, f := range []tfile{
			{name: "opt/x.lzma", mode: 0o644, data: b},
			{name: "opt/run.sh", mode: 0o755, data: append([]byte(head), b...)},
		} {
			res, err := scanOne(t, s, f)
			if err != nil {
				t.Fatalf("%s, %s: ScanLayer: %v", name, f.name, err)
			}
			if !hasFindingIn(res.Findings, "MinerXMRig") {
				t.Errorf("%s, %s: findings %v, want MinerXMRig inside it", name, f.name, res.Findings)
			}
		}
	}
}
