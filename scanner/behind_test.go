package scanner

import (
	"bytes"
	"compress/flate"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// selfExtracting is a script in makeself's default form: the script, then
// the archive's raw bytes, which the script unpacks from its own file with
// tail. tarFlag is tar's flag for the compression ("z", "J", "j").
func selfExtracting(archive []byte, tarFlag string) []byte {
	header := "#!/bin/sh\n# self-extracting archive\n" +
		"dir=${1:-/tmp/.x}; mkdir -p \"$dir\"\n" +
		"tail -c +%07d \"$0\" | tar x" + tarFlag + "f - -C \"$dir\" || exit 1\n" +
		"[ -z \"$1\" ] && exec \"$dir/xmrig-6.21.0/xmrig\"\nexit 0\n"
	// The offset is written with a fixed width, so its own length is known.
	off := len(fmt.Sprintf(header, 0)) + 1
	return append([]byte(fmt.Sprintf(header, off)), archive...)
}

// gzexed is what Debian's gzexe makes of data: a script that unpacks the
// gzip behind its own lines and runs it.
func gzexed(t *testing.T, data []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "helper")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gzexe", path).CombinedOutput(); err != nil {
		t.Fatalf("gzexe: %v: %s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A compressed stream behind a script's lines (gzexe, makeself's default
// form) is looked into as the script unpacks it: the shell and tar are
// the ground truth for every form, and each layer is refused.
func TestStreamsBehindAScriptRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	release := tarLayer(t, xmrigRelease()...)
	cases := []struct {
		name    string
		data    []byte
		tarFlag string // "" when the shell is not asked to unpack it
		inside  string // the finding's path after the stream's name
	}{
		{"makeself .tar.gz", selfExtracting(gzipBytes(t, release), "z"), "z", "!xmrig-6.21.0/xmrig"},
		{"makeself .tar.xz", selfExtracting(cli(t, release, "xz", "-c"), "J"), "J", "!xmrig-6.21.0/xmrig"},
		{"makeself .tar.bz2", selfExtracting(cli(t, release, "bzip2", "-c"), "j"), "j", "!xmrig-6.21.0/xmrig"},
		{"makeself .tar.zst", selfExtracting(zstdBytes(t, release), "--zstd -"), "", "!xmrig-6.21.0/xmrig"},
		{"gzexe", gzexed(t, samples.XMRig()), "", "!gzip"},
		// Run with sh, or read from /proc/self/exe: no "#!" needed.
		{"a comment for a first line", append([]byte("# run with sh\ntail -c +40 \"$0\" | tar xz\nexit\n"), gzipBytes(t, release)...), "", "!xmrig-6.21.0/xmrig"},
		{"a byte-order mark before #!", append([]byte("\ufeff#!/bin/sh\ntail -c +30 \"$0\" | tar xz\n"), gzipBytes(t, release)...), "", "!xmrig-6.21.0/xmrig"},
		{"appended to a program", append(samples.ELF("a helper"), gzipBytes(t, release)...), "", "!xmrig-6.21.0/xmrig"},
		{"makeself .lzma", selfExtracting(cli(t, samples.XMRig(), "xz", "--format=lzma", "-c"), "--lzma "), "", "!lzma"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.tarFlag != "" {
				dir := t.TempDir()
				script := filepath.Join(dir, "install.sh")
				if err := os.WriteFile(script, c.data, 0o755); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("sh", script, filepath.Join(dir, "out")).CombinedOutput(); err != nil {
					t.Fatalf("the script does not unpack itself: %v: %s", err, out)
				}
				if got, _ := os.ReadFile(filepath.Join(dir, "out/xmrig-6.21.0/xmrig")); !bytes.Equal(got, samples.XMRig()) {
					t.Fatal("the script unpacked something else than the miner")
				}
			}
			res, err := scanOne(t, s, tfile{name: "tmp/install.sh", mode: 0o755, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			off := len(c.data)
			for _, m := range [][]byte{gzipMagic, xzMagic, bzip2Magic, zstdMagic, {0x5d, 0, 0}} {
				if i := bytes.Index(c.data, m); i > 0 && i < off {
					off = i
				}
			}
			want := fmt.Sprintf("/tmp/install.sh!%v@%d%s", nestedCompression(c.data[off:]), off, c.inside)
			if !hasFinding(res.Findings, "MinerXMRig", want) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, want)
			}
		})
	}
}

// A script whose later bytes only look like a stream's start, or hold a
// benign stream, gives no finding; one with more streams than are read is
// refused.
func TestStreamsBehindAScriptKeptOut(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	fake := append([]byte("#!/bin/sh\necho hi\n"), gzipMagic...)
	fake = append(fake, samples.Filler(2000)...)
	benign := selfExtracting(gzipBytes(t, tarLayer(t, reg("doc/README", 0o644, strings.Repeat("a line of a README\n", 300)))), "z")
	many := []byte("#!/bin/sh\n")
	for i := range maxBehindStreams + 1 {
		many = append(many, gzipBytes(t, fmt.Appendf(nil, "part %d\n", i))...)
	}
	zstdDict := []byte("\x28\xb5\x2f\xfd\x21\x07\x05\x29\x00\x00hello")
	for _, c := range []struct {
		name string
		data []byte
		want string // the one rule expected, or none
	}{
		{"gzip's magic followed by noise", fake, ""},
		// Streams a host unpacks and pullgate cannot: refused behind a
		// script's lines, not in a program's bytes.
		{"xz with the x86 filter behind a script", append([]byte("#!/bin/sh\n"), cli(t, samples.XMRig(), "xz", "--x86", "--lzma2", "-c")...), ArchiveUnreadableRule},
		{"a zstd frame that needs a dictionary behind a script", append([]byte("#!/bin/sh\n"), zstdDict...), ArchiveUnreadableRule},
		// compress(1) and LZ4 are read: their magic numbers before other
		// bytes, in a script's string as in a program, are no finding.
		{"compress(1)'s magic behind a script", append([]byte("#!/bin/sh\n\x1f\x9d\x90\x23\x21\x2f\x00"), samples.Filler(300)...), ""},
		{"compress(1)'s magic in a script's string", []byte("#!/bin/sh\nM='\x1f\x9d\x90'\necho \"$M\"\n"), ""},
		{"LZ4's legacy magic in a script's string", []byte("#!/bin/sh\nM='\x02\x21\x4c\x18\x10\x00\x00\x00'\n"), ""},
		// A profile's protobuf (Go's default.pgo, gzipped) holds
		// compress(1)'s header by chance, with no NUL before it.
		{"compress(1)'s magic in binary data", append([]byte(strings.Repeat("\x08\x12\x1aname\x22", 50)+"\x1f\x9d\x90\x23\x21\x2f\x00"), samples.Filler(300)...), ""},
		{"LZ4's magic in a program", append(samples.ELF("lz4 support"), 0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7), ""},
		{"a benign archive", benign, ""},
		{"more streams than are read", many, ArchiveUnreadableRule},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			switch {
			case c.want == "" && len(res.Findings) != 0:
				t.Fatalf("findings %v, want none", res.Findings)
			case c.want != "" && (len(res.Findings) != 1 || res.Findings[0].Rule != c.want || res.Findings[0].Severity != SeverityHigh):
				t.Fatalf("findings %v, want one %s (high)", res.Findings, c.want)
			}
		})
	}
}

// A program's section headers are the attacker's to write (the loader
// reads none of them): a stream in a section marked as machine code is
// looked into as one anywhere else in the program.
func TestStreamInACodeSectionRead(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("no objcopy (binutils) on this machine")
	}
	dir := t.TempDir()
	payload, prog := filepath.Join(dir, "payload.gz"), filepath.Join(dir, "helper")
	if err := os.WriteFile(payload, gzipBytes(t, samples.XMRig()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(objcopy, "--add-section", ".text.payload="+payload,
		"--set-section-flags", ".text.payload=code,readonly,contents", "/bin/true", prog).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v: %s", err, out)
	}
	data, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section(".text.payload")
	if sec == nil || sec.Flags&elf.SHF_EXECINSTR == 0 {
		t.Fatal("objcopy did not add the payload as a code section")
	}
	s := newTestScanner(t, Options{Workers: 2})
	res, err := scanOne(t, s, tfile{name: "usr/bin/helper", mode: 0o755, data: data})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	want := fmt.Sprintf("/usr/bin/helper!gzip@%d!gzip", sec.Offset)
	if !hasFinding(res.Findings, "MinerXMRig", want) {
		t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, want)
	}
}

// nulFreeGzip is a gzip member of payload that holds no NUL, as a crafted
// one can: an extra field where the flags, the time and the extra flags
// would be zero, the payload varied by the spaces after it until its
// deflate and CRC hold none, and no size at the end (which holds one for
// anything under 16 MiB). gzip -d writes all of it before it says the
// file ends early, so a script piping it to a shell runs it.
func nulFreeGzip(t *testing.T, payload string) (member, plain []byte) {
	t.Helper()
	head := []byte{0x1f, 0x8b, 8, 4, 1, 1, 1, 1, 2, 3, 5, 1} // FEXTRA, XLEN 0x105
	head = append(head, 'Z', 'Z', 1, 1)                      // one subfield "ZZ" of 0x101 bytes
	head = append(head, bytes.Repeat([]byte{'z'}, 0x101)...)
	for pad := range 4000 {
		plain = []byte(payload + strings.Repeat(" ", pad) + "\n")
		// gzip's deflate, which ends in its last block of data (Go's
		// ends in an empty one, which holds a NUL).
		gz := cli(t, plain, "gzip", "-9nc")
		body := gz[10 : len(gz)-8]
		member = append(slices.Clip(head), body...)
		member = binary.LittleEndian.AppendUint32(member, crc32.ChecksumIEEE(plain))
		if bytes.IndexByte(member, 0) < 0 {
			return member, plain
		}
	}
	t.Fatal("no variant of the payload deflates without a NUL")
	return nil, nil
}

// A compressed stream need not hold a NUL: a script with one behind its
// lines holds none, and is looked into as any other.
func TestNULFreeStreamBehindAScriptRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	stream, plain := nulFreeGzip(t, samples.KinsingDropper())
	cmd := exec.Command("gzip", "-dc")
	cmd.Stdin = bytes.NewReader(stream)
	if got, _ := cmd.Output(); !bytes.Equal(got, plain) {
		t.Fatal("gzip -dc gives back something else than the payload")
	}
	head := "# run with sh\ntail -c +53 \"$0\" | gzip -dc | sh\nexit 0\n"
	data := append([]byte(head), stream...)
	if bytes.IndexByte(data, 0) >= 0 {
		t.Fatal("the script holds a NUL")
	}
	res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: data})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	c := nestedCompression(stream)
	want := fmt.Sprintf("/opt/run.sh!%v@%d!%v", c, len(head), c)
	if !hasFinding(res.Findings, "KinsingDropper", want) {
		t.Fatalf("findings %v: want KinsingDropper on %s", res.Findings, want)
	}
}

// zipLocalOnly is one zip local entry of data, deflated or stored, with
// no central directory and no end record: what a streaming extractor
// unpacks (gzip -d takes the first entry of such a file).
func zipLocalOnly(data []byte, method uint16) []byte {
	body := data
	if method == 8 {
		var b bytes.Buffer
		fw, _ := flate.NewWriter(&b, flate.BestCompression)
		fw.Write(data)
		fw.Close()
		body = b.Bytes()
	}
	return zipLocalEntry(data, body, method)
}

// zipLocalEntry is a zip local header for data, compressed as body with
// method, followed by body.
func zipLocalEntry(data, body []byte, method uint16) []byte {
	h := binary.LittleEndian.AppendUint32(nil, 0x04034b50)
	for _, v := range []uint16{20, 0, method, 0, 0} {
		h = binary.LittleEndian.AppendUint16(h, v)
	}
	for _, v := range []uint32{crc32.ChecksumIEEE(data), uint32(len(body)), uint32(len(data))} {
		h = binary.LittleEndian.AppendUint32(h, v)
	}
	h = binary.LittleEndian.AppendUint16(h, 1) // name length
	h = binary.LittleEndian.AppendUint16(h, 0)
	return append(append(h, 'x'), body...)
}

// A zip entry with no directory behind a file's start, as gzip -dc,
// funzip or bsdtar unpack it from a script's tail, is read.
func TestZipEntriesBehindAPrefixRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	dropper := []byte(samples.KinsingDropper())
	deflated := zipLocalOnly(dropper, 8)
	if got := toolOutput("gzip", deflated); !bytes.Equal(got, dropper) {
		t.Fatalf("gzip -dc gives %q, not the dropper", got)
	}
	head := []byte("# run with sh\ntail -c +54 \"$0\" | gzip -dc | sh\nexit\n")
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"deflated, behind a script", append(slices.Clip(head), deflated...)},
		{"stored, behind a script", append(slices.Clip(head), zipLocalOnly(dropper, 0)...)},
		{"behind a program", append(samples.ELF("a helper"), deflated...)},
		{"after a benign entry", append(append(slices.Clip(head), zipLocalOnly([]byte("hello\n"), 8)...), deflated...)},
		{"after an entry of a method no extractor has", append(append(slices.Clip(head), zipLocalOnly([]byte("hello\n"), 80)...), deflated...)},
		// Methods bsdtar unpacks from a pipe too.
		{"bzip2", append(slices.Clip(head), zipLocalEntry(dropper, compressZip(t, zipBzip2, dropper), zipBzip2)...)},
		{"LZMA", append(slices.Clip(head), zipLocalEntry(dropper, compressZip(t, zipLZMA, dropper), zipLZMA)...)},
		{"xz", append(slices.Clip(head), zipLocalEntry(dropper, compressZip(t, zipXz, dropper), zipXz)...)},
		{"zstd", append(slices.Clip(head), zipLocalEntry(dropper, compressZip(t, zipZstd, dropper), zipZstd)...)},
	} {
		res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: c.data})
		if err != nil {
			t.Fatalf("%s: ScanLayer: %v", c.name, err)
		}
		found := false
		for _, f := range res.Findings {
			found = found || f.Rule == "KinsingDropper" && strings.Contains(f.Path, "!zip@")
		}
		if !found {
			t.Errorf("%s: findings %v, want KinsingDropper in a zip behind the prefix", c.name, res.Findings)
		}
	}
}

// Bytes that only start like a zip entry behind a file's start (a JVM's
// class data archives hold the magic number before bytes of no meaning)
// give no finding.
func TestZipEntriesBehindAPrefixKeptOut(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	garbage := append(samples.ELF("a helper"), zipLocalOnly([]byte("hello\n"), 8)...)
	garbage = append(garbage, zipLocalOnly(samples.Filler(200), 80)...)
	garbage = append(garbage, []byte("PK\x03\x04\x14\x00\x00\x00\x00\x00")...)
	res, err := scanOne(t, s, tfile{name: "usr/lib/helper", mode: 0o755, data: garbage})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 0 {
		t.Fatalf("findings %v, want none", res.Findings)
	}
}

// A stream behind a script's lines that asks for more than the decoders
// allow (a zstd window or an xz dictionary of 128 MiB, which zstd and xz
// grant) stops the layer at that limit, as it does at a file's start;
// behind a program's bytes it is taken for other bytes.
func TestOversizedStreamsBehindAScriptRefused(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	dropper := []byte(samples.KinsingDropper())
	zst := bytes.Clone(cli(t, dropper, "zstd", "--no-check", "-c"))
	if zst[4]&0x20 != 0 {
		t.Fatal("zstd wrote a single-segment frame")
	}
	zst[5] = (27 - 10) << 3 // a window of 128 MiB
	xz := cli(t, dropper, "xz", "--lzma2=dict=128MiB", "-c")
	for _, c := range []struct {
		tool   string
		stream []byte
	}{{"zstd", zst}, {"xz", xz}} {
		if got := toolOutput(c.tool, c.stream); !bytes.Equal(got, dropper) {
			t.Fatalf("%s -dc gives %q", c.tool, got)
		}
		script := append([]byte("# run with sh\ntail -c +44 \"$0\" | "+c.tool+" -dc | sh\n"), c.stream...)
		if _, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: script}); !errors.Is(err, ErrLimit) {
			t.Errorf("%s behind a script: %v, want ErrLimit", c.tool, err)
		}
		res, err := scanOne(t, s, tfile{name: "usr/lib/helper", mode: 0o755, data: append(samples.ELF("a helper"), c.stream...)})
		if err != nil || len(res.Findings) != 0 {
			t.Errorf("%s behind a program: %v, %v; want no finding", c.tool, res.Findings, err)
		}
	}
}

// compress(1) and LZ4 streams are read behind any prefix: a script (with
// a terminal's escape in its first line, or a NUL in a comment, which
// dash runs), or a program. gzip -dc and lz4 -dc are the ground truth.
func TestOlderStreamsBehindAPrefixRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	streams := []struct {
		name, tool string
		data       []byte
	}{
		{"compress", "gzip", lzwCompress(miner, 16)},
		{"lz4", "lz4", cli(t, miner, "lz4", "-c")},
		{"lz4", "lz4", cli(t, miner, "lz4", "-l", "-c")},
	}
	prefixes := []struct {
		name string
		data []byte
	}{
		{"a script", []byte("#!/bin/sh\ntail -c +40 \"$0\" | sh\nexit\n")},
		{"a script with an escape in its first line", []byte("#!/bin/sh \x1b[1m\ntail -c +40 \"$0\" | sh\nexit\n")},
		{"a script with a NUL in a comment", []byte("#!/bin/sh\n# \x00\ntail -c +40 \"$0\" | sh\nexit\n")},
		{"a program", samples.ELF("a helper")},
	}
	for _, st := range streams {
		if got := toolOutput(st.tool, st.data); !bytes.Equal(got, miner) {
			t.Fatalf("%s -dc does not give the miner back from the %s stream", st.tool, st.name)
		}
		for _, p := range prefixes {
			data := append(slices.Clip(p.data), st.data...)
			res, err := scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: data})
			if err != nil {
				t.Fatalf("%s behind %s: ScanLayer: %v", st.name, p.name, err)
			}
			want := fmt.Sprintf("/opt/run.sh!%s@%d!%s", st.name, len(p.data), st.name)
			if !hasFinding(res.Findings, "MinerXMRig", want) {
				t.Errorf("%s behind %s: findings %v, want MinerXMRig on %s", st.name, p.name, res.Findings, want)
			}
		}
	}
}
