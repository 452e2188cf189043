package scanner

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// archiveOf is what sh -c script writes to its standard output, run in
// a folder holding files: kdevtmpfsi (an executable, when miner is set)
// and 70 small gzip files.
func archiveOf(t *testing.T, miner bool, script string) []byte {
	t.Helper()
	dir := t.TempDir()
	for i := range 70 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("page%02d.1.gz", i)), gzipBytes(t, []byte(fmt.Sprintf("manual page %d\n", i))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if miner {
		if err := os.WriteFile(filepath.Join(dir, "kdevtmpfsi"), samples.Filler(3000), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return out
}

// Tars in the format before ustar (no magic) and cpio archives (newc and
// odc, as initramfs images and bsdtar write them) are walked as archives:
// unread, their members went unseen, and a file of many small gzip files
// was refused for its streams behind its start (outside attack round 20,
// F6 and FB1).
func TestV7TarsAndCpioWalked(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range []struct{ name, script, file, member string }{
		{"GNU tar v7", "tar --format=v7 -cf - *", "opt/x.tar", "/opt/x.tar!kdevtmpfsi"},
		{"bsdtar v7", "bsdtar --format=v7 -cf - *", "opt/x.tar", "/opt/x.tar!kdevtmpfsi"},
		{"cpio newc", "bsdtar --format=newc -cf - *", "opt/x.cpio", "/opt/x.cpio!kdevtmpfsi"},
		{"cpio odc", "bsdtar --format=cpio -cf - *", "opt/x.cpio", "/opt/x.cpio!kdevtmpfsi"},
		{"initramfs, a gzip cpio", "ls | bsdtar --format=newc -cf - -T - | gzip -c", "boot/initrd.img", "/boot/initrd.img!gzip!kdevtmpfsi"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: c.file, mode: 0o644, data: archiveOf(t, true, c.script)})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Findings, "KinsingBinary", c.member) {
				t.Fatalf("findings %v: want KinsingBinary on %s", res.Findings, c.member)
			}
			res, err = scanOne(t, s, tfile{name: c.file, mode: 0o644, data: archiveOf(t, false, c.script)})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if len(res.Findings) > 0 {
				t.Fatalf("without the miner, findings %v", res.Findings)
			}
		})
	}
}

// newcEntry is a newc cpio member named name, whose name field holds
// after its NUL the bytes hidden, and whose body is body.
func newcEntry(name string, hidden, body []byte, mode int) []byte {
	nameField := append(append([]byte(name), 0), hidden...)
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		1, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(nameField), 0)
	out := append([]byte(h), nameField...)
	out = append(out, make([]byte, (4-len(out)%4)%4)...)
	out = append(out, body...)
	return append(out, make([]byte, (4-len(body)%4)%4)...)
}

// A cpio archive's own bytes are searched as a tar's are: a gzip after
// the NUL of a member's name, which cpio -i passes over and tail -c cuts
// out.
func TestCpioOwnBytesSearched(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	gz := gzipBytes(t, samples.Dropper())
	first := newcEntry("notes.txt", nil, []byte("notes\n"), 0o100644)
	archive := slices.Concat(first, newcEntry("a.txt", gz, []byte("hello\n"), 0o100644), newcEntry("TRAILER!!!", nil, nil, 0))
	off := len(first) + 110 + len("a.txt") + 1
	if got := hostCut(t, archive, fmt.Sprintf("tail -c +%d $F | gzip -dc 2>/dev/null", off+1)); !bytes.Equal(got, samples.Dropper()) {
		t.Fatal("tail -c | gzip -dc does not give the dropper: the case is wrong")
	}
	if got := hostCut(t, archive, "bsdtar -tf $F"); string(got) != "notes.txt\na.txt\n" {
		t.Fatalf("bsdtar -tf lists %q: the case is wrong", got)
	}
	res, err := scanOne(t, s, tfile{name: "opt/x.cpio", mode: 0o644, data: archive})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	if p := fmt.Sprintf("/opt/x.cpio!gzip@%d!gzip", off); !hasFinding(res.Findings, "MinerCommandLine", p) {
		t.Fatalf("findings %v: want MinerCommandLine on %s", res.Findings, p)
	}
}

// At the depth limit, content known only by a weak signature (an .lzma
// header's few bytes) that does not decode is no archive, and nothing is
// refused for it: a GCC LTO section's zstd frame in an object file in a
// tar gives 32 bytes that start as an .lzma header (outside attack round
// 20, FB2). A real .lzma file there is still too deep.
func TestWeakSignatureAtTheDepthLimit(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	lto := []byte("\x04\x00\x00\x00\x01\x00\x98\x04\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	if c := nestedCompression(lto); c != compressedLzma {
		t.Fatalf("the LTO output is taken for %v, not .lzma: the case is wrong", c)
	}
	object := func(content []byte) []byte {
		return slices.Concat([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 1100), zstdBytes(t, content), make([]byte, 64))
	}
	lzma := cli(t, bytes.Repeat([]byte("release notes\n"), 60), "xz", "--format=lzma", "-c")
	for _, c := range []struct {
		name    string
		content []byte
		tooDeep bool
	}{
		{"LTO output", lto, false},
		{"an .lzma file", lzma, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tarData := tarLayer(t, tfile{name: "python.o", mode: 0o644, data: object(c.content)})
			res, err := scanOne(t, s, tfile{name: "opt/py.tar", mode: 0o644, data: tarData})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if got := slices.ContainsFunc(res.Findings, func(f Finding) bool { return f.Rule == ArchiveTooDeepRule }); got != c.tooDeep || len(res.Findings) > 1 {
				t.Fatalf("findings %v: want ArchiveTooDeep %v, and nothing else", res.Findings, c.tooDeep)
			}
		})
	}
}

// An initramfs image is several cpio archives one after the other, NULs
// between them, some compressed, and the kernel unpacks them all: an
// early microcode archive, then the main one (outside attack round 20b).
func TestConcatenatedCpioWalked(t *testing.T) {
	early := slices.Concat(newcEntry("kernel/x86/microcode/GenuineIntel.bin", nil, samples.Filler(3000), 0o100644), newcEntry("TRAILER!!!", nil, nil, 0), make([]byte, 512))
	main := slices.Concat(newcEntry("kdevtmpfsi", nil, samples.Filler(3000), 0o100755), newcEntry("TRAILER!!!", nil, nil, 0))
	gz := gzipBytes(t, main)
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	bigEarly := slices.Concat(newcEntry("kernel/firmware.bin", nil, samples.Filler(big), 0o100644), newcEntry("TRAILER!!!", nil, nil, 0), make([]byte, 512))
	for _, c := range []struct {
		name, want string
		data       []byte
	}{
		{"two archives", "/boot/initrd.img!kdevtmpfsi", slices.Concat(early, main)},
		{"an archive, then a gzip one", fmt.Sprintf("/boot/initrd.img!gzip@%d!gzip!kdevtmpfsi", len(early)), slices.Concat(early, gz)},
		{"an archive over the scan window, then a gzip one", fmt.Sprintf("/boot/initrd.img!gzip@%d!gzip!kdevtmpfsi", len(bigEarly)), slices.Concat(bigEarly, gz)},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: "boot/initrd.img", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Findings, "KinsingBinary", c.want) {
				t.Fatalf("findings %v: want KinsingBinary on %s", res.Findings, c.want)
			}
		})
	}
}

// A v7 tar whose first header GNU tar still extracts: a type it does not
// know (extracted as a regular file), a checksum summed as signed bytes,
// a mode that is no octal number (outside attack round 20b, R8).
func TestV7OddHeadersWalked(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	body := samples.XMRig()
	v7 := func(edit func(h []byte)) []byte {
		h := rawHeader("kdevtmpfsi", '0', len(body))
		clear(h[257:265])
		copy(h[100:], "0000755\x00")
		edit(h)
		return slices.Concat(h, pad512(body), tarEnd)
	}
	for _, c := range []struct {
		name string
		tar  []byte
	}{
		{"an unknown type", v7(func(h []byte) { h[156] = 'Q'; sumHeader(h) })},
		{"a signed checksum", v7(func(h []byte) {
			copy(h[108:], "\xe9\xe9\xe9\x00")
			copy(h[148:], "        ")
			sum := 0
			for _, c := range h {
				sum += int(int8(c))
			}
			copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
		})},
		{"a mode that is no number", v7(func(h []byte) { copy(h[100:], "00007x5\x00"); sumHeader(h) })},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "x.tar")
			if err := os.WriteFile(f, c.tar, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, _ := exec.Command("tar", "xf", f, "-C", dir).CombinedOutput(); !fileExists(filepath.Join(dir, "kdevtmpfsi")) {
				t.Fatalf("GNU tar does not write kdevtmpfsi out (%s): the case is wrong", out)
			}
			res, err := scanOne(t, s, tfile{name: "opt/x.tar", mode: 0o644, data: c.tar})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Findings, "MinerXMRig", "/opt/x.tar!kdevtmpfsi") {
				t.Fatalf("findings %v: want MinerXMRig on /opt/x.tar!kdevtmpfsi", res.Findings)
			}
		})
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// binaryCpioEntry is a member of a cpio in the old binary form, in the
// byte order order.
func binaryCpioEntry(order binary.ByteOrder, name string, body []byte, mode int) []byte {
	h := make([]byte, 26)
	for i, v := range []int{0o070707, 0, 1, mode, 0, 0, 1, 0, 0, 0, len(name) + 1, len(body) >> 16, len(body) & 0xffff} {
		order.PutUint16(h[2*i:], uint16(v))
	}
	out := append(append(h, name...), 0)
	out = append(out, make([]byte, len(out)%2)...)
	return append(append(out, body...), make([]byte, len(body)%2)...)
}

// cpio as GNU cpio and bsdtar extract it: the old binary form in either
// byte order, names longer than 4 KiB, junk between members, and an
// .lzma archive after another (outside attack round 20b, R1, R2, R4, R5).
func TestCpioFormsWalked(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	elf := samples.XMRig()
	trailer := newcEntry("TRAILER!!!", nil, nil, 0)
	early := slices.Concat(newcEntry("kernel/x86/microcode/GenuineIntel.bin", nil, samples.Filler(3000), 0o100644), trailer)
	main := slices.Concat(newcEntry("kdevtmpfsi", nil, elf, 0o100755), trailer)
	for _, c := range []struct {
		name, want string
		data       []byte
	}{
		{"binary, little-endian", "/opt/x.cpio!kdevtmpfsi", slices.Concat(binaryCpioEntry(binary.LittleEndian, "kdevtmpfsi", elf, 0o100755), binaryCpioEntry(binary.LittleEndian, "TRAILER!!!", nil, 0))},
		{"binary, big-endian", "/opt/x.cpio!kdevtmpfsi", slices.Concat(binaryCpioEntry(binary.BigEndian, "kdevtmpfsi", elf, 0o100755), binaryCpioEntry(binary.BigEndian, "TRAILER!!!", nil, 0))},
		{"a name of 5,000 bytes", "/opt/x.cpio!kdevtmpfsi", slices.Concat(newcEntry("kdevtmpfsi", samples.Filler(5000), elf, 0o100755), trailer)},
		{"junk between members", "/opt/x.cpio!kdevtmpfsi", slices.Concat(newcEntry("a.txt", nil, []byte("a\n"), 0o100644), []byte("JUNK JUNK JUNK JUNK JUNK"), main)},
		{"an .lzma archive after another", fmt.Sprintf("/opt/x.cpio!lzma@%d!lzma!kdevtmpfsi", len(early)), slices.Concat(early, cli(t, main, "xz", "--format=lzma", "-c"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name != "an .lzma archive after another" {
				dir := t.TempDir()
				cmd := exec.Command("bsdtar", "-xf", "-", "-C", dir)
				cmd.Stdin = bytes.NewReader(c.data)
				if out, _ := cmd.CombinedOutput(); !fileExists(filepath.Join(dir, "kdevtmpfsi")) {
					t.Fatalf("bsdtar does not write kdevtmpfsi out (%s): the case is wrong", out)
				}
			}
			res, err := scanOne(t, s, tfile{name: "opt/x.cpio", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Findings, "MinerXMRig", c.want) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, c.want)
			}
		})
	}
}

// An uncompressed tar or cpio behind a prefix, which tail -c | tar x and
// tail -c | cpio -i unpack: makeself --nocomp, a script's appended tar, a
// program's (outside attack round 20b, R7). In a file over the scan
// window too.
func TestRawArchivesBehindAPrefixRead(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := tfile{name: "kdevtmpfsi", mode: 0o755, data: samples.XMRig()}
	script := []byte("#!/bin/sh\ntail -c +58 \"$0\" | tar xf - -C /tmp && exec /tmp/kdevtmpfsi\n")
	tarData := tarLayer(t, miner)
	cpioData := slices.Concat(newcEntry("kdevtmpfsi", nil, samples.XMRig(), 0o100755), newcEntry("TRAILER!!!", nil, nil, 0))
	padded := slices.Concat(script, []byte("# "), samples.Filler(big), []byte("\n"))
	for _, c := range []struct {
		name, kind string
		prefix     []byte
		archive    []byte
	}{
		{"a script, then a tar", "tar", script, tarData},
		{"a script, then a cpio", "cpio", script, cpioData},
		{"a gzip, then a tar", "tar", gzipBytes(t, []byte("release notes\n")), tarData},
		{"a script over the scan window, then a tar", "tar", padded, tarData},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := slices.Concat(c.prefix, c.archive)
			tool := map[string]string{"tar": "bsdtar -xf - -C $D", "cpio": "bsdtar -xf - -C $D"}[c.kind]
			dir := t.TempDir()
			cmd := exec.Command("sh", "-c", fmt.Sprintf("tail -c +%d $F | %s", len(c.prefix)+1, tool))
			f := filepath.Join(dir, "data")
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd.Env = append(os.Environ(), "F="+f, "D="+dir)
			if out, _ := cmd.CombinedOutput(); !fileExists(filepath.Join(dir, "kdevtmpfsi")) {
				t.Fatalf("tail -c | %s does not write kdevtmpfsi out (%s): the case is wrong", c.kind, out)
			}
			res, err := scanOne(t, s, tfile{name: "opt/install.sh", mode: 0o755, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if p := fmt.Sprintf("/opt/install.sh!%s@%d!kdevtmpfsi", c.kind, len(c.prefix)); !hasFinding(res.Findings, "MinerXMRig", p) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, p)
			}
		})
	}
}

// A compressed file read to its end is not searched for uncompressed
// archives behind its start: xz and gzip store incompressible stretches
// as they are, a tar's headers among them, and its output holds that tar
// already (a Debian package's data.tar.xz was refused as too deep).
func TestRawArchivesInACompressedStreamNotReadAgain(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	tarData := tarLayer(t, tfile{name: "kdevtmpfsi", mode: 0o755, data: samples.XMRig()})
	var stored bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&stored, gzip.NoCompression)
	zw.Write(tarData)
	zw.Close()
	if !bytes.Contains(stored.Bytes(), tarData[:blockSize]) {
		t.Fatal("the gzip file holds no tar header as it is: the case is wrong")
	}
	res, err := scanOne(t, s, tfile{name: "opt/x.tar.gz", mode: 0o644, data: stored.Bytes()})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	for _, f := range res.Findings {
		if f.Path != "/opt/x.tar.gz!kdevtmpfsi" {
			t.Fatalf("findings %v: want them on /opt/x.tar.gz!kdevtmpfsi only", res.Findings)
		}
	}
	if !hasFinding(res.Findings, "MinerXMRig", "/opt/x.tar.gz!kdevtmpfsi") {
		t.Fatalf("findings %v: want MinerXMRig on /opt/x.tar.gz!kdevtmpfsi", res.Findings)
	}
}
