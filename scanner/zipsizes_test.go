package scanner

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// zipDeclaring writes a zip whose one deflated member holds content but
// declares the uncompressed size usize and CRC-32 crc in its headers.
func zipDeclaring(t *testing.T, name string, content []byte, usize uint64, crc uint32) []byte {
	t.Helper()
	var deflated bytes.Buffer
	fw, err := flate.NewWriter(&deflated, flate.DefaultCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(content)
	fw.Close()
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(deflated.Len()), UncompressedSize64: usize})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(deflated.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// A deflated zip member is scanned as unzip and jar extract it, to the end
// of its deflate stream, whatever size and CRC-32 its headers declare.
func TestZipMemberDeclaringOtherSizes(t *testing.T) {
	miner := append(samples.XMRig(), samples.Filler(200<<10)...) // longer than a batch: read as a stream
	n := uint64(len(miner))
	crc := crc32.ChecksumIEEE(miner)
	cases := []struct {
		name  string
		usize uint64
		crc   uint32
	}{
		{"as it is", n, crc},
		{"one byte longer", n + 1, crc},
		{"twice as long", 2 * n, crc},
		{"4 GiB", 0xfffffffe, crc},
		{"100 bytes", 100, crc},
		{"empty", 0, crc},
		{"wrong CRC-32", n, crc ^ 0xffff},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := zipDeclaring(t, "bin/worker", miner, c.usize, c.crc)
			res, err := scanOne(t, s, tfile{name: "opt/app/tools.jar", mode: 0o644, data: z})
			if err != nil {
				t.Fatal(err)
			}
			f, ok := findingOf(res.Findings, "MinerXMRig")
			if !ok {
				t.Fatalf("findings %+v: the miner in the member was not found", res.Findings)
			}
			if want := "/opt/app/tools.jar!bin/worker"; f.Path != want {
				t.Errorf("finding at %q, want %q", f.Path, want)
			}
		})
	}
	// Small members keep being packed at their real size.
	for _, size := range []int{0, 1, 5000} {
		t.Run(fmt.Sprintf("clean member of %d bytes", size), func(t *testing.T) {
			content := samples.Filler(size)
			z := zipDeclaring(t, "a.txt", content, uint64(size)+7, crc32.ChecksumIEEE(content))
			res, err := scanOne(t, s, tfile{name: "opt/a.zip", mode: 0o644, data: z})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Findings) != 0 {
				t.Fatalf("findings %+v on a clean member", res.Findings)
			}
		})
	}
}

// A zip behind something else is a zip to unzip, jar and Python, which
// read it from its end: a "#!" zipapp, an executable stub, zeros. Its
// members are looked into; a file that only carries the end record's
// magic is not taken for one.
func TestZipBehindAPrefix(t *testing.T) {
	miner := append(samples.XMRig(), samples.Filler(2000)...)
	z := zipDeclaring(t, "bin/worker", miner, uint64(len(miner)), crc32.ChecksumIEEE(miner))
	cases := []struct {
		name, path string
		prefix     []byte
	}{
		{"a #! zipapp", "opt/app.pyz", []byte("#!/usr/bin/env python3\n")},
		{"an executable stub", "opt/setup.run", append(samples.ELF("GLIBC_2.34"), samples.Filler(3000)...)},
		{"zeros", "opt/blob.dat", make([]byte, 64)},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: c.path, mode: 0o755, data: append(bytes.Clone(c.prefix), z...)})
			if err != nil {
				t.Fatal(err)
			}
			f, ok := findingOf(res.Findings, "MinerXMRig")
			if !ok || f.Path != "/"+c.path+"!bin/worker" {
				t.Fatalf("findings %+v: want MinerXMRig on /%s!bin/worker", res.Findings, c.path)
			}
		})
	}
	t.Run("the end record's magic alone", func(t *testing.T) {
		data := append(samples.Filler(5000), append([]byte("PK\x05\x06"), make([]byte, 30)...)...)
		res, err := scanOne(t, s, tfile{name: "opt/data.bin", mode: 0o644, data: data})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Findings) != 0 {
			t.Fatalf("findings %+v on a file that is no zip", res.Findings)
		}
	})
}

// A zip whose end record counts its entries wrongly is read from its
// directory as unzip, jar and Python read it.
func TestZipMiscountedEntries(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range map[string][]byte{"README": []byte("a clean member"), "bin/worker": samples.XMRig()} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(content)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, count := range []uint16{0, 1, 5, 0xffff} {
		t.Run(fmt.Sprintf("counted %d", count), func(t *testing.T) {
			z := bytes.Clone(buf.Bytes())
			end := len(z) - 22
			binary.LittleEndian.PutUint16(z[end+8:], count)
			binary.LittleEndian.PutUint16(z[end+10:], count)
			if _, err := zip.NewReader(bytes.NewReader(z), int64(len(z))); err == nil {
				t.Fatal("archive/zip opens the miscounted zip: the case proves nothing")
			}
			res, err := scanOne(t, s, tfile{name: "opt/app/lib.jar", mode: 0o644, data: z})
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := findingOf(res.Findings, "MinerXMRig"); !ok || f.Path != "/opt/app/lib.jar!bin/worker" {
				t.Fatalf("findings %+v: want MinerXMRig on /opt/app/lib.jar!bin/worker", res.Findings)
			}
		})
	}
}

// A compressed file whose content starts with two zero blocks is an empty
// tar to archive/tar, but a shell runs what follows: it is scanned.
func TestCompressedContentAfterZeros(t *testing.T) {
	content := append(make([]byte, 1024+512*3), samples.XMRig()...)
	s := newTestScanner(t, Options{Workers: 2})
	res, err := scanOne(t, s, tfile{name: "opt/run.gz", mode: 0o755, data: gzipBytes(t, content)})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := findingOf(res.Findings, "MinerXMRig"); !ok || f.Path != "/opt/run.gz!run" {
		t.Fatalf("findings %+v: want MinerXMRig on /opt/run.gz!run", res.Findings)
	}
}

// A compressed file cut short is reported unreadable (and scanned whole as
// bytes), whichever decoder reads it: some end a cut stream with a bare
// io.ErrUnexpectedEOF, which is not the end of the content.
func TestCutCompressedFileReported(t *testing.T) {
	content := append(samples.Filler(40000), []byte("the end of a cut file")...)
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range []struct {
		name string
		blob []byte
	}{
		{"run.gz", gzipBytes(t, content)},
		{"run.bz2", cli(t, content, "bzip2", "-c")},
		{"run.xz", cli(t, content, "xz", "-c", "-1")},
		{"run.zst", zstdBytes(t, content)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cut := c.blob[:len(c.blob)*2/3]
			res, err := scanOne(t, s, tfile{name: "opt/" + c.name, mode: 0o644, data: cut})
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := findingOf(res.Findings, ArchiveUnreadableRule); !ok || f.Path != "/opt/"+c.name {
				t.Fatalf("findings %+v, want %s at /opt/%s", res.Findings, ArchiveUnreadableRule, c.name)
			}
		})
	}
}
