package scanner

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// debOf builds a Debian package with dpkg-deb holding the miner at
// usr/bin/kworker, its data compressed as comp (-Zxz, -Zgzip, ...).
func debOf(t *testing.T, comp string) []byte {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pkg")
	for _, d := range []string{"DEBIAN", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := "Package: tool\nVersion: 1.0\nArchitecture: amd64\nMaintainer: x <x@example.com>\nDescription: tool\n"
	if err := os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/kworker"), samples.XMRig(), 0o755); err != nil {
		t.Fatal(err)
	}
	out := root + ".deb"
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", comp, "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, b)
	}
	deb, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return deb
}

// Formats a host's own tools unpack inside a layer: a Debian package
// (dpkg -i, dpkg-deb -x), LZMA's own .lzma (unlzma, xz --format=lzma)
// are read, as are compress(1)'s .Z (gzip -d) and LZ4 (lz4 -d, zstd -d);
// lzip is refused unread.
func TestOlderFormatsInLayers(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	lzmaFile := cli(t, samples.XMRig(), "xz", "--format=lzma", "-c")
	if got := cli(t, lzmaFile, "xz", "--format=lzma", "-dc"); string(got) != string(samples.XMRig()) {
		t.Fatal("xz does not give the miner back from the .lzma file")
	}
	cases := []struct {
		name, file   string
		data         []byte
		rule, path   string
		wantSeverity string
	}{
		{"deb, data.tar.xz", "opt/p/tool.deb", debOf(t, "-Zxz"), "MinerXMRig", "/opt/p/tool.deb!data.tar.xz!usr/bin/kworker", SeverityHigh},
		{"deb, data.tar.gz", "opt/p/tool.deb", debOf(t, "-Zgzip"), "MinerXMRig", "/opt/p/tool.deb!data.tar.gz!usr/bin/kworker", SeverityHigh},
		{"deb named otherwise", "var/cache/blob", debOf(t, "-Zzstd"), "MinerXMRig", "/var/cache/blob!data.tar.zst!usr/bin/kworker", SeverityHigh},
		{"lzma", "opt/p/m.lzma", lzmaFile, "MinerXMRig", "/opt/p/m.lzma!m", SeverityHigh},
		{"lzma, other properties", "opt/p/m.lzma", cli(t, samples.XMRig(), "xz", "--format=lzma", "--lzma1=lc=0,lp=0,pb=0", "-c"), "MinerXMRig", "/opt/p/m.lzma!m", SeverityHigh},
		{"lz4", "opt/p/m.lz4", cli(t, samples.XMRig(), "lz4", "-c"), "MinerXMRig", "/opt/p/m.lz4!m", SeverityHigh},
		{"lz4's legacy frame", "opt/p/m.lz4", cli(t, samples.XMRig(), "lz4", "-l", "-c"), "MinerXMRig", "/opt/p/m.lz4!m", SeverityHigh},
		{"lzip", "opt/p/m.tar.lz", append([]byte("LZIP\x01\x14"), samples.Filler(100)...), ArchiveUnreadableRule, "/opt/p/m.tar.lz", SeverityHigh},
		// A frame header naming dictionary 7: the decoder cannot go on.
		{"zstd with a dictionary", "opt/p/m.zst", []byte("\x28\xb5\x2f\xfd\x21\x07\x05\x29\x00\x00hello"), ArchiveUnreadableRule, "/opt/p/m.zst", SeverityHigh},
		{"compress .Z", "opt/p/m.Z", lzwCompress(samples.XMRig(), 16), "MinerXMRig", "/opt/p/m.Z!m", SeverityHigh},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: c.file, mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			found := false
			for _, f := range res.Findings {
				found = found || f.Rule == c.rule && f.Path == c.path && f.Severity == c.wantSeverity
			}
			if !found {
				t.Fatalf("findings %v: want %s (%s) on %s", res.Findings, c.rule, c.wantSeverity, c.path)
			}
		})
	}
}

// A static library (an ar archive, not a Debian package) of this machine
// is scanned as bytes, not unpacked, and it and text that starts as an
// .lzma header could give nothing.
func TestOlderFormatsKeptOut(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	libs, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/*.a")
	if len(libs) == 0 {
		t.Skip("no static library on this machine")
	}
	lib, err := os.ReadFile(libs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []tfile{
		{name: "usr/lib/" + filepath.Base(libs[0]), mode: 0o644, data: lib},
		reg("etc/brackets.txt", 0o644, "]\x00\x00\x80\x00 a bracket, then text\n"),
	} {
		res, err := scanOne(t, s, f)
		if err != nil || len(res.Findings) != 0 {
			t.Fatalf("%s: findings %v, err %v", f.name, res.Findings, err)
		}
		if res.Files != 1 {
			t.Fatalf("%s: %d files scanned: a static library is not unpacked, only a Debian package is", f.name, res.Files)
		}
	}
}

// zlib streams (Python's zlib, zlib-flate, pigz -dz) are read as a file,
// behind a script's lines, and in a XAR archive (bsdtar's default
// compression for its files), which bsdtar unpacks from a pipe behind a
// script or a program too.
func TestZlibStreamsRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	dropper := []byte(samples.KinsingDropper())
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write(dropper)
	zw.Close()
	z := zb.Bytes()
	if got := cli(t, z, "python3", "-c", "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))"); !bytes.Equal(got, dropper) {
		t.Fatal("python3's zlib does not give the dropper back")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), dropper, 0o755); err != nil {
		t.Fatal(err)
	}
	xar := cli(t, nil, "bsdtar", "--format", "xar", "-C", dir, "-cf", "-", "run.sh")
	if got := cli(t, xar, "bsdtar", "-xOf", "-"); !bytes.Equal(got, dropper) {
		t.Fatal("bsdtar does not give the dropper back from the XAR archive")
	}
	script := []byte("#!/bin/sh\ntail -c +50 \"$0\" | bsdtar -xOf - | sh\nexit\n")
	for _, c := range []struct {
		name, file string
		data       []byte
	}{
		{"zlib", "opt/x.zz", z},
		{"zlib behind a script", "opt/run.sh", append([]byte("#!/bin/sh\ntail -c +50 \"$0\" | zlib-flate -uncompress | sh\n"), z...)},
		{"XAR", "opt/x.xar", xar},
		{"XAR behind a script", "opt/run.sh", append(slices.Clip(script), xar...)},
		{"XAR behind a program", "opt/run", append(samples.ELF("a helper"), xar...)},
	} {
		res, err := scanOne(t, s, tfile{name: c.file, mode: 0o755, data: c.data})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingIn(res.Findings, "KinsingDropper") {
			t.Errorf("%s: findings %v, want KinsingDropper inside it", c.name, res.Findings)
		}
	}
	// Text that starts with zlib's header by chance is text.
	res, err := scanOne(t, s, tfile{name: "opt/notes.txt", mode: 0o644, data: []byte("x^2 + y^2 = r^2\n\x01and some more lines\n")})
	if err != nil || len(res.Findings) != 0 {
		t.Fatalf("a text starting with x^: %v, %v", res.Findings, err)
	}
}

// Round 17's forms, each checked against the host's tool: .Z headers
// gzip -d reads (reserved bits set, under 9 bits a code), skippable
// frames before an LZ4 frame, zlib of a small window, zlib with a wrong
// Adler-32 behind a script (zlib-flate and pigz -dz write it out), and a
// XAR archive of LZMA-encoded files. An LZ4 frame naming a dictionary is
// refused.
func TestOlderFormatsRound17(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	dropper := []byte(samples.KinsingDropper())
	reserved := lzwCompress(dropper, 16)
	reserved[2] |= 0x60
	lz4 := cli(t, dropper, "lz4", "-c")
	skippable := append([]byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}, lz4...)
	py := func(code string) []byte {
		return cli(t, dropper, "python3", "-c", "import sys, zlib; d = sys.stdin.buffer.read(); "+code)
	}
	smallWindow := py("c = zlib.compressobj(9, zlib.DEFLATED, 9); sys.stdout.buffer.write(c.compress(d) + c.flush())")
	badAdler := bytes.Clone(py("sys.stdout.buffer.write(zlib.compress(d))"))
	badAdler[len(badAdler)-1] ^= 0x55
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), dropper, 0o755); err != nil {
		t.Fatal(err)
	}
	xarLzma := cli(t, nil, "bsdtar", "--format", "xar", "--options", "xar:compression=lzma", "-C", dir, "-cf", "-", "run.sh")
	for _, c := range []struct {
		name, tool string
		stream     []byte
		behind     bool // behind a script, else a file of its own
	}{
		{".Z with reserved bits", "gzip -dc", reserved, false},
		{".Z of 8 bits a code", "gzip -dc", lzwCompress(dropper, 8), true},
		{"skippable frames before LZ4", "lz4 -dc", skippable, false},
		{"zlib of a 512-byte window", "python3 -c 'import sys,zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read(), 9))'", smallWindow, false},
		{"zlib with a wrong Adler-32", "", badAdler, true},
		{"XAR of LZMA files", "bsdtar -xOf -", xarLzma, true},
	} {
		if c.tool != "" {
			cmd := exec.Command("sh", "-c", c.tool)
			cmd.Stdin = bytes.NewReader(c.stream)
			if got, _ := cmd.Output(); !bytes.Equal(got, dropper) {
				t.Fatalf("%s: %s does not give the dropper back", c.name, c.tool)
			}
		}
		f := tfile{name: "opt/x", mode: 0o644, data: c.stream}
		if c.behind {
			f = tfile{name: "opt/run.sh", mode: 0o755, data: append([]byte("#!/bin/sh\ntail -c +40 \"$0\" | sh\nexit\n"), c.stream...)}
		}
		res, err := scanOne(t, s, f)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingIn(res.Findings, "KinsingDropper") {
			t.Errorf("%s: findings %v, want KinsingDropper inside it", c.name, res.Findings)
		}
	}
	// An LZ4 frame naming a dictionary its blocks do not need: lz4 -d
	// unpacks it, and so does pullgate, at a file's start, behind a
	// script and behind a program.
	dict := append(bytes.Clone(lz4[:6]), 7, 0, 0, 0, 0)
	dict[4] |= 1
	dict[10] = byte(xxh32(dict[4:10]) >> 8)
	dict = append(dict, lz4[7:]...)
	if got := cli(t, dict, "lz4", "-dc"); !bytes.Equal(got, dropper) {
		t.Fatal("lz4 -dc does not give the dropper back from the frame naming a dictionary")
	}
	for _, f := range []tfile{
		{name: "opt/x.lz4", mode: 0o644, data: dict},
		{name: "opt/run.sh", mode: 0o755, data: append([]byte("#!/bin/sh\ntail -c +40 \"$0\" | sh\nexit\n"), dict...)},
		{name: "opt/run", mode: 0o755, data: append(samples.ELF("a helper"), dict...)},
	} {
		res, err := scanOne(t, s, f)
		if err != nil || !hasFindingIn(res.Findings, "KinsingDropper") {
			t.Errorf("an LZ4 frame naming a dictionary, %s: %v, %v; want KinsingDropper inside it", f.name, res.Findings, err)
		}
	}
}

// The header checksum xxh32 gives is lz4's own.
func TestXXH32AsLZ4(t *testing.T) {
	for _, args := range [][]string{{"-c"}, {"-c", "--content-size"}, {"-c", "-B4", "--no-frame-crc"}} {
		f := cli(t, samples.Filler(3000), "lz4", args...)
		n := 6
		if f[4]&8 != 0 {
			n += 8
		}
		if got := byte(xxh32(f[4:n]) >> 8); got != f[n] {
			t.Fatalf("lz4 %v: header checksum %#x, lz4 wrote %#x", args, got, f[n])
		}
	}
}

// A legacy LZ4 frame whose first block is over the format's bound is
// refused before a reader is made, as lz4 -d writes nothing of it; one
// within the bound is still read.
func TestLZ4LegacyBlockBound(t *testing.T) {
	over := []byte{0x02, 0x21, 0x4c, 0x18, 0x0f, 0x94, 0xc2, 0x0f, 'h', 'e', 'l', 'l', 'o'}
	cmd := exec.Command("lz4", "-dc")
	cmd.Stdin = bytes.NewReader(over)
	if out, err := cmd.Output(); err == nil || len(out) > 0 {
		t.Fatalf("lz4 -dc wrote %d bytes (error %v) of a block over the bound", len(out), err)
	}
	if _, _, err := newLZ4Reader(bufio.NewReader(bytes.NewReader(over))); err == nil {
		t.Fatal("a legacy block over the bound was taken")
	}
	plain := samples.Filler(100000)
	zr, release, err := newLZ4Reader(bufio.NewReader(bytes.NewReader(cli(t, plain, "lz4", "-l", "-c"))))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("legacy frame read back %d bytes, %v", len(got), err)
	}
}

// A trial of an .lzma candidate is charged no more dictionary than its
// first streamTrial bytes touch (lzmaTrialDict), a whole reading the
// dictionary its header asks for; a header asking for more than
// xzMaxDict is refused before anything is allocated.
func TestLzmaTrialDictionary(t *testing.T) {
	plain := bytes.Repeat(append(samples.XMRig(), samples.Filler(5000)...), 20)
	data := samples.Lzma(plain)
	d := binary.LittleEndian.Uint32(data[1:5])
	if d <= lzmaTrialDict {
		t.Fatalf("the sample's dictionary is %d bytes, want more than the trial's", d)
	}
	first := func(maxCharge uint32) ([]byte, int64) {
		t.Helper()
		var charged int64
		r, release, err := decompressLzma(bufio.NewReader(bytes.NewReader(data)), func(n int64) error { charged = n; return nil }, maxCharge)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		b := make([]byte, streamTrial)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return b, charged
	}
	whole, charged := first(0)
	if charged != int64(d) {
		t.Errorf("a whole reading charged %d bytes of dictionary, want the header's %d", charged, d)
	}
	trial, charged := first(lzmaTrialDict)
	if charged > lzmaTrialDict {
		t.Errorf("a trial charged %d bytes of dictionary, want at most %d", charged, lzmaTrialDict)
	}
	if !bytes.Equal(whole, trial) {
		t.Fatal("the trial's first bytes differ from the stream's")
	}
	// A header asking for more than xzMaxDict is read with xzMaxDict,
	// and charged no more (outside attack round 22, F3).
	huge := bytes.Clone(data)
	binary.LittleEndian.PutUint32(huge[1:5], 1<<31)
	var charged2 int64
	r, release, err := decompressLzma(bufio.NewReader(bytes.NewReader(huge)), func(n int64) error { charged2 = n; return nil }, 0)
	if err != nil {
		t.Fatalf("a header asking for 2 GiB: %v", err)
	}
	got, err := io.ReadAll(r)
	release()
	if err != nil || !bytes.Equal(got, plain) || charged2 != xzMaxDict {
		t.Fatalf("a header asking for 2 GiB: %d bytes, %v, charged %d; want the stream, charged %d", len(got), err, charged2, xzMaxDict)
	}
}
