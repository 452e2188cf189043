package scanner

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// zipDescriptorCases hide a deflated entry inside the data of a stored
// member the directory lists with its size in a data descriptor: the
// data holds first a descriptor that fits what comes before it, then the
// hidden local entry bin/xmrig, then more bytes, and the descriptor after
// the data fits the whole. A streaming extractor (bsdtar reading a pipe)
// ends the member at the first descriptor and writes out bin/xmrig.
func zipDescriptorCases(t testing.TB) []zipLocalCase {
	le := binary.LittleEndian
	lead := samples.Filler(8 << 10)
	// desc is a data descriptor with the CRC-32 of b and size bytes
	// (sizes of 8 bytes each when z64).
	desc := func(b []byte, size int, z64 bool) []byte {
		d := le.AppendUint32(le.AppendUint32(nil, 0x08074b50), crc32.ChecksumIEEE(b))
		if z64 {
			return le.AppendUint64(le.AppendUint64(d, uint64(size)), uint64(size))
		}
		return le.AppendUint32(le.AppendUint32(d, uint32(size)), uint32(size))
	}
	z := rawZip(t, []rawEntry{{name: "bin/xmrig", data: samples.XMRig(), deflate: true, hidden: true}}, false)
	hiddenEntry := z[:len(z)-22] // without its end record
	pad := func(first, d, after []byte) rawEntry {
		data := append(append(append(bytes.Clone(first), d...), hiddenEntry...), after...)
		return rawEntry{name: "pad", data: data, descriptor: true}
	}
	fits := pad(lead, desc(lead, len(lead), false), lead)
	sized := fits
	sized.localCSize = uint32(len(fits.data))
	inner := rawZip(t, []rawEntry{fits}, false)
	return []zipLocalCase{
		{"stored member sized by its descriptor hiding a deflated entry", inner, []string{"bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry, inner descriptor's size lies",
			rawZip(t, []rawEntry{pad(lead, desc(lead, 7, false), lead)}, false), []string{"bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry, inner descriptor at its start",
			rawZip(t, []rawEntry{pad(nil, desc(nil, 0, false), lead)}, false), []string{"bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry, inner descriptor of zip64 form",
			rawZip(t, []rawEntry{pad(lead, desc(lead, len(lead), true), lead)}, false), []string{"bin/xmrig"}},
		{"stored member sized by its descriptor and its local header hiding a deflated entry",
			rawZip(t, []rawEntry{sized}, false), []string{"bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry, then a member",
			rawZip(t, []rawEntry{fits, {name: "b.txt", data: lead}}, false), []string{"bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry (spooled)",
			rawZip(t, []rawEntry{pad(lead, desc(lead, len(lead), false), samples.Filler(3*minWindow))}, false), []string{"bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry, in a jar in a zip",
			rawZip(t, []rawEntry{{name: "lib/x.jar", data: inner, deflate: true}}, false), []string{"lib/x.jar!bin/xmrig"}},
		{"stored member sized by its descriptor hiding a deflated entry, in a jar in a .tar.gz",
			tarGz(t, tfile{name: "lib/x.jar", mode: 0o644, data: inner}), []string{"lib/x.jar!bin/xmrig"}},
	}
}

// zipPrefixCases are zips behind a prefix (a "#!" zipapp line, or 1 MiB:
// past one batch, read in the window path) whose directory archive/zip
// refuses, and unzip, Python, jar and bsdtar read.
func zipPrefixCases(t testing.TB) []zipLocalCase {
	le := binary.LittleEndian
	sh := []byte("#!/bin/sh\nexec python3 \"$0\"\n")
	big := samples.Filler(1 << 20)
	entries := func(junk []byte) []rawEntry {
		return []rawEntry{{name: "a.txt", data: samples.Filler(8 << 10), junk: junk}, {name: "bin/worker", data: samples.XMRig(), deflate: true}}
	}
	// counted has its end record count n entries.
	counted := func(z []byte, n uint16) []byte {
		z = bytes.Clone(z)
		le.PutUint16(z[len(z)-14:], n)
		le.PutUint16(z[len(z)-12:], n)
		return z
	}
	// noZip64 has the directory say bin/worker's compressed size is
	// 0xFFFFFFFF, with no zip64 extra field to hold it.
	noZip64 := func(z []byte) []byte {
		z = bytes.Clone(z)
		at := bytes.Index(z, []byte("PK\x01\x02\x1e\x03\x14\x00\x00\x00\x08\x00")) // the deflated member's entry
		le.PutUint32(z[at+20:], 0xFFFFFFFF)
		return z
	}
	plain := rawZip(t, entries(nil), false)
	counting := rawZip(t, entries(sh), false) // its offsets count the prefix
	cat := func(a, b []byte) []byte { return append(bytes.Clone(a), b...) }
	want := []string{"bin/worker"}
	return []zipLocalCase{
		{"#! zipapp whose end record counts 1 entry of 2", cat(sh, counted(plain, 1)), want},
		{"#! zipapp whose end record counts 3 entries of 2", cat(sh, counted(plain, 3)), want},
		{"zip behind 1 MiB whose end record counts 1 entry of 2", cat(big, counted(plain, 1)), want},
		{"#! zipapp whose directory sizes a member 0xFFFFFFFF without zip64", cat(sh, noZip64(plain)), want},
		{"zip behind 1 MiB whose directory sizes a member 0xFFFFFFFF without zip64", cat(big, noZip64(plain)), want},
		{"#! zipapp counting the prefix in its offsets, end record counting 1 entry of 2", counted(counting, 1), want},
		{"#! zipapp counting the prefix in its offsets, a member sized 0xFFFFFFFF without zip64", noZip64(counting), want},
	}
}

// A zip behind a prefix whose directory cannot be read is reported so,
// as one without a prefix is, besides the members its local walk finds.
func TestZipBehindAPrefixUnreadableDirectory(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	n := 0
	for _, c := range zipPrefixCases(t) {
		if !strings.Contains(c.name, "0xFFFFFFFF") {
			continue
		}
		n++
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: "opt/app.jar", mode: 0o644, data: c.zip})
			if err != nil {
				t.Fatal(err)
			}
			if !hasFinding(res.Findings, ArchiveUnreadableRule, "/opt/app.jar") {
				t.Errorf("no %s on /opt/app.jar; findings %+v", ArchiveUnreadableRule, res.Findings)
			}
		})
	}
	if n == 0 {
		t.Fatal("no case has a directory archive/zip refuses")
	}
}

// storedEnd finds the first descriptor whose CRC-32 fits the bytes before
// it wherever it falls among its reads (which grow from 4 KiB to 64 KiB),
// past signatures whose CRC-32 does not fit, in memory and spooled.
func TestStoredEndAcrossReads(t *testing.T) {
	const at = 100 // where the data starts
	for _, n := range []int{0, 1, 4<<10 - 17, 4<<10 - 8, 4 << 10, 4<<10 + 3, 12<<10 - 1, 12 << 10, 28<<10 + 9, 64 << 10, 200<<10 + 5} {
		data := samples.Filler(n)
		for i := 500; i+16 <= n; i += 1000 {
			copy(data[i:], "PK\x07\x08\x01\x00\x00\x00") // a signature whose CRC-32 does not fit
		}
		file := append(make([]byte, at), data...)
		file = binary.LittleEndian.AppendUint32(append(file, "PK\x07\x08"...), crc32.ChecksumIEEE(data))
		file = append(file, make([]byte, 50)...)
		for _, ra := range []io.ReaderAt{bytes.NewReader(file), io.NewSectionReader(bytes.NewReader(file), 0, int64(len(file)))} {
			zw := newZipWalk(item{}, ra, int64(len(file)))
			if end, ok := zw.storedEnd(at); !ok || end != at+int64(n) {
				t.Errorf("data of %d bytes (%T): storedEnd = %d, %v, want %d", n, ra, end, ok, at+n)
			}
		}
	}
}
