package scanner

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// rawEntry is one entry of a zip written byte by byte (rawZip), so that
// its headers can lie as an attacker's do.
type rawEntry struct {
	name       string
	data       []byte
	deflate    bool
	hidden     bool   // a local header and data the central directory does not list
	descriptor bool   // flag bit 3: sizes zero in the local header, a data descriptor after the data
	cdCSize    int64  // > 0: the compressed size the directory (and descriptor) declares
	body       []byte // non-nil: the data as written, whatever data and deflate say
	extra      []byte // the local header's extra field
	localCSize uint32 // non-zero: the compressed size the local header declares
	nameLen    int    // non-zero: the name length the local header declares
	junk       []byte // bytes before the local header
	method     uint16 // non-zero: the method the headers declare, with body as the data written
}

// rawZip writes entries one after the other, then the central directory
// of those not hidden and the end record. lieEnd makes the end record
// count its entries wrongly and misstate the directory's size, so that
// archive/zip refuses the directory.
func rawZip(t testing.TB, entries []rawEntry, lieEnd bool) []byte {
	t.Helper()
	le := binary.LittleEndian
	var out, cd bytes.Buffer
	put := func(b *bytes.Buffer, vs ...any) {
		for _, v := range vs {
			binary.Write(b, le, v)
		}
	}
	listed := 0
	for _, e := range entries {
		body, method := e.data, uint16(0)
		if e.deflate {
			var d bytes.Buffer
			fw, _ := flate.NewWriter(&d, flate.DefaultCompression)
			fw.Write(e.data)
			fw.Close()
			body, method = d.Bytes(), 8
		}
		if e.body != nil {
			body = e.body
		}
		if e.method != 0 {
			method = e.method
		}
		crc, csize, usize := crc32.ChecksumIEEE(e.data), uint32(len(body)), uint32(len(e.data))
		if e.cdCSize > 0 {
			csize = uint32(e.cdCSize)
		}
		flags := uint16(0)
		lcrc, lcsize, lusize := crc, csize, usize
		if e.descriptor {
			flags, lcrc, lcsize, lusize = 8, 0, 0, 0
		}
		out.Write(e.junk)
		off := uint32(out.Len())
		if e.localCSize != 0 {
			lcsize = e.localCSize
		}
		nameLen := uint16(len(e.name))
		if e.nameLen != 0 {
			nameLen = uint16(e.nameLen)
		}
		put(&out, uint32(0x04034b50), uint16(20), flags, method, uint16(0), uint16(0x21), lcrc, lcsize, lusize, nameLen, uint16(len(e.extra)))
		out.WriteString(e.name)
		out.Write(e.extra)
		out.Write(body)
		if e.descriptor {
			put(&out, uint32(0x08074b50), crc, csize, usize)
		}
		if e.hidden {
			continue
		}
		listed++
		put(&cd, uint32(0x02014b50), uint16(0x031e), uint16(20), flags, method, uint16(0), uint16(0x21), crc, csize, usize,
			uint16(len(e.name)), uint16(0), uint16(0), uint16(0), uint16(0), uint32(0o100755<<16), off)
		cd.WriteString(e.name)
	}
	dirOff, dirSize := uint32(out.Len()), uint32(cd.Len())
	out.Write(cd.Bytes())
	count := uint16(listed)
	if lieEnd {
		count, dirSize = count+3, 10
	}
	put(&out, uint32(0x06054b50), uint16(0), uint16(0), count, count, dirSize, dirOff, uint16(0))
	return out.Bytes()
}

// zipLocalCase is a crafted zip and the members a scanner must find the
// miner in (paths inside the zip; "" for the zip's own bytes, where the
// miner is not at the start, so MinerCommandLine finds it, not
// MinerXMRig).
type zipLocalCase struct {
	name string
	zip  []byte
	want []string
}

func zipLocalCases(t testing.TB) []zipLocalCase {
	// Clean members are stored noise, so what follows them lies past the
	// 4 KiB of the zip scanned as its head.
	clean := func(name string) rawEntry { return rawEntry{name: name, data: samples.Filler(8 << 10)} }
	miner := func(name string, deflate bool) rawEntry {
		return rawEntry{name: name, data: samples.XMRig(), deflate: deflate}
	}
	hidden := func(e rawEntry) rawEntry { e.hidden = true; return e }
	short := func(e rawEntry, descriptor bool) rawEntry { e.cdCSize, e.descriptor = 20, descriptor; return e }
	sizedAfter := rawEntry{name: "lib/a.dat", data: []byte("stored, sized after"), descriptor: true, hidden: true}
	behindJunk := hidden(miner("bin/hidden", false))
	behindJunk.junk = []byte("sixteen junk b..")
	inNone := clean("b.txt")
	inNone.junk = samples.XMRig()
	corrupt := rawEntry{name: "lib/b.dat", data: []byte("x"), deflate: true, hidden: true, body: bytes.Repeat([]byte{0xff}, 64)}
	prefix := append([]byte("#!/usr/bin/env python3\n"), samples.Filler(3<<19)...) // 1.5 MiB
	return append(append([]zipLocalCase{
		{"hidden stored entry between two members",
			rawZip(t, []rawEntry{clean("a.txt"), hidden(miner("bin/hidden", false)), clean("b.txt")}, false), []string{"bin/hidden"}},
		{"hidden deflated entry before the directory",
			rawZip(t, []rawEntry{clean("a.txt"), hidden(miner("bin/hidden", true))}, false), []string{"bin/hidden"}},
		{"compressed size short in the directory",
			rawZip(t, []rawEntry{clean("a.txt"), short(miner("bin/worker", true), false), clean("b.txt")}, false), []string{"bin/worker"}},
		{"compressed size short in a data descriptor",
			rawZip(t, []rawEntry{short(miner("bin/worker", true), true), clean("b.txt")}, false), []string{"bin/worker"}},
		{"end record that lies",
			rawZip(t, []rawEntry{miner("bin/one", true), clean("a.txt"), miner("bin/two", true)}, true), []string{"bin/one", "bin/two"}},
		{"hidden stored entry behind a stored one sized after its data",
			rawZip(t, []rawEntry{clean("a.txt"), sizedAfter, hidden(miner("bin/hidden", false)), clean("b.txt")}, false), []string{"bin/hidden"}},
		{"hidden stored entry behind junk",
			rawZip(t, []rawEntry{clean("a.txt"), behindJunk, clean("b.txt")}, false), []string{"bin/hidden"}},
		{"miner's bytes between entries, in none",
			rawZip(t, []rawEntry{clean("a.txt"), inNone, clean("c.txt")}, false), []string{""}},
		{"hidden stored entry behind one that does not inflate",
			rawZip(t, []rawEntry{clean("a.txt"), corrupt, hidden(miner("bin/hidden", false)), clean("b.txt")}, false), []string{""}},
		{"hidden deflated entry in a zip larger than the window (spooled)",
			rawZip(t, []rawEntry{{name: "pad", data: samples.Filler(3 * minWindow)}, hidden(miner("bin/hidden", true)), clean("b.txt")}, false), []string{"bin/hidden"}},
		{"zip behind a prefix of 1.5 MiB",
			append(prefix, rawZip(t, []rawEntry{clean("a.txt"), miner("bin/worker", true)}, false)...), []string{"bin/worker"}},
	}, zipDescriptorCases(t)...), append(zipPrefixCases(t), zipMethodCases(t)...)...)
}

// Each way of hiding a member from a reader of the central directory:
// the miner is found on the member's path, and the layer refused.
func TestZipReadAsEveryExtractorReadsIt(t *testing.T) {
	def := newTestScanner(t, Options{Workers: 2})
	small := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})
	for _, c := range zipLocalCases(t) {
		t.Run(c.name, func(t *testing.T) {
			s := def
			if strings.Contains(c.name, "spooled") {
				s = small
				if int64(len(c.zip)) <= minWindow {
					t.Fatalf("the zip (%d bytes) fits one window: the case proves nothing", len(c.zip))
				}
			}
			res, err := scanOne(t, s, tfile{name: "opt/app.jar", mode: 0o644, data: c.zip})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range c.want {
				where, rule := "/opt/app.jar", "MinerCommandLine"
				if m != "" {
					where, rule = where+"!"+m, "MinerXMRig"
				}
				if !hasFinding(res.Findings, rule, where) {
					t.Errorf("no %s on %s; findings %+v", rule, where, res.Findings)
				}
			}
			if len(res.Blocking()) == 0 {
				t.Errorf("nothing refuses the layer; findings %+v", res.Findings)
			}
		})
	}
}

// Ground truth: every file bsdtar (reading the zip from a pipe, as a
// stream, as jar x does from standard input) or unzip (reading its central directory)
// extracts from each crafted zip is a member the scanner found the miner
// in (every member of these zips but the clean ones carries it).
func TestZipExtractorsAgree(t *testing.T) {
	for _, tool := range []string{"bsdtar", "unzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run make deps", tool)
		}
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range zipLocalCases(t) {
		t.Run(c.name, func(t *testing.T) {
			zipPath := filepath.Join(t.TempDir(), "app.zip")
			if err := os.WriteFile(zipPath, c.zip, 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := scanOne(t, s, tfile{name: "opt/app.jar", mode: 0o644, data: c.zip})
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range []struct {
				tool  string
				args  func(dir string) []string
				stdin bool
			}{
				{"bsdtar", func(dir string) []string { return []string{"-xf", "-", "-C", dir} }, true},
				{"unzip", func(dir string) []string { return []string{"-o", zipPath, "-d", dir} }, false},
			} {
				dir := t.TempDir()
				cmd := exec.Command(x.tool, x.args(dir)...)
				if x.stdin {
					// Through a pipe: bsdtar reads a seekable file from
					// its central directory, a pipe from its local headers.
					cmd.Stdin = bytes.NewReader(c.zip)
				}
				out, _ := cmd.CombinedOutput() // damaged zips make both complain; what they wrote counts
				t.Logf("%s extracts %v", x.tool, extracted(t, dir))
				for _, name := range extracted(t, dir) {
					data, err := os.ReadFile(filepath.Join(dir, name))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Contains(data, samples.XMRig()[:64]) {
						continue // a clean member, or a cut one that holds no miner
					}
					if !hasFinding(res.Findings, "MinerXMRig", "/opt/app.jar!"+name) {
						t.Errorf("%s extracts %s holding the miner, and the scanner found no miner there; findings %+v\n%s", x.tool, name, res.Findings, out)
					}
				}
			}
		})
	}
}

// extracted lists the regular files under dir, relative to it.
func extracted(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// zipHostileCases are zips whose local headers try to make the local walk
// loop, allocate or read without bound, and the limits that must stop it
// (limit: the scan must fail with ErrLimit; otherwise it must end with a
// verdict).
func zipHostileCases(t testing.TB) []struct {
	name   string
	zip    []byte
	limits Limits
	limit  bool
} {
	zeros := make([]byte, 64<<20)
	tiny := make([]rawEntry, 20000)
	for i := range tiny {
		tiny[i] = rawEntry{name: "t", data: []byte{1}, hidden: true}
	}
	zip64 := binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, 1), 16)
	zip64 = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(zip64, 1<<62), 1<<62)
	return []struct {
		name   string
		zip    []byte
		limits Limits
		limit  bool
	}{
		{"20,000 tiny hidden entries", rawZip(t, tiny, false), Limits{MaxFiles: 1000}, true},
		{"hidden deflate bomb", rawZip(t, []rawEntry{{name: "bomb", data: zeros, deflate: true, hidden: true}}, false), Limits{MaxLayerBytes: 32 << 20}, true},
		{"hidden directory holding a deflate bomb", rawZip(t, []rawEntry{{name: "d/", data: zeros, deflate: true, hidden: true}}, false), Limits{MaxLayerBytes: 32 << 20}, true},
		{"zip64 size past the end", rawZip(t, []rawEntry{{name: "big", data: samples.Filler(100), hidden: true, extra: zip64, localCSize: 0xFFFFFFFF}, {name: "a", data: []byte("a")}}, false), Limits{}, false},
		{"name past the end", rawZip(t, []rawEntry{{name: "n", data: []byte("a"), hidden: true, nameLen: 0xFFFF}}, false), Limits{}, false},
		{"entry whose size points into itself", rawZip(t, []rawEntry{{name: "s", data: samples.Filler(100), hidden: true, localCSize: 1}, {name: "a", data: []byte("a")}}, false), Limits{}, false},
	}
}

// The local walk is bounded by the limits every member counts against,
// whatever its headers say.
func TestZipLocalWalkBounded(t *testing.T) {
	for _, c := range zipHostileCases(t) {
		t.Run(c.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: c.limits})
			res, err := scanOne(t, s, tfile{name: "opt/h.zip", mode: 0o644, data: c.zip})
			if c.limit != errors.Is(err, ErrLimit) || (!c.limit && err != nil) {
				t.Fatalf("err = %v (findings %+v), want ErrLimit: %v", err, res.Findings, c.limit)
			}
		})
	}
}
