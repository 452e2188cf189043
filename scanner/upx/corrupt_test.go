package upx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seeds are a tiny harmless program (testdata/tiny.c, built with
// "gcc -Os -static -nostdlib -fno-pie -no-pie") packed by UPX 3.94 with
// each NRV method and LZMA, and what "upx -d" restores from them.
func seeds(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/tiny-amd64-*.upx")
	if err != nil || len(paths) != 4 {
		t.Fatalf("want the 4 packed seeds in testdata, found %d (%v)", len(paths), err)
	}
	m := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[strings.TrimSuffix(filepath.Base(p), ".upx")] = b
	}
	return m
}

func unpackBytes(b []byte, lim Limits) (*Unpacked, error) {
	return Unpack(bytes.NewReader(b), int64(len(b)), lim)
}

func TestSeedsUnpack(t *testing.T) {
	want, err := os.ReadFile("testdata/tiny-amd64")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds(t) {
		got, err := unpackBytes(b, realLimits)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.File, want) || !got.Checksummed || got.MarksAltered {
			t.Errorf("%s: restored %d bytes (equal %v), checksummed %v, marks altered %v", name, len(got.File), bytes.Equal(got.File, want), got.Checksummed, got.MarksAltered)
		}
	}
}

// Every cut through the packed blocks is refused as corrupt. A cut that
// only takes the trailer (and the padding before it) leaves the blocks whole: the file is restored,
// but not reported as checksummed.
func TestTruncated(t *testing.T) {
	want, err := os.ReadFile("testdata/tiny-amd64")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds(t) {
		for cut := 300; cut < len(b); cut += 7 {
			got, err := unpackBytes(b[:cut], realLimits)
			switch {
			case err == nil && cut >= len(b)-48 && !got.Checksummed && bytes.Equal(got.File, want):
			case err == nil:
				t.Fatalf("%s cut at %d of %d: restored without error (checksummed %v)", name, cut, len(b), got.Checksummed)
			case !errors.Is(err, ErrCorrupt):
				t.Fatalf("%s cut at %d of %d: %v, want ErrCorrupt", name, cut, len(b), err)
			}
		}
	}
}

// blockSpans walks the b_infos of a packed seed from the first one to the
// loader: where each header starts, and whether its block is compressed.
func blockSpans(b []byte) (heads []int, compressed []bool) {
	le := binary.LittleEndian
	for pos := 0x100; pos+12 <= len(b); {
		unc, cpr := le.Uint32(b[pos:]), le.Uint32(b[pos+4:])
		if unc == 0 || cpr > unc {
			break
		}
		heads = append(heads, pos)
		compressed = append(compressed, cpr < unc)
		pos += 12 + int(cpr)
	}
	return heads, compressed
}

// Tampering with any byte of the packed blocks, their sizes, a compressed
// block's method or filter, or the trailer's checksums is refused with a
// reason. (A stored block's method and filter bytes are ignored, as UPX's
// own loader ignores them.)
func TestTampered(t *testing.T) {
	b := seeds(t)["tiny-amd64-nrv2e"]
	le := binary.LittleEndian
	heads, compressed := blockSpans(b)
	if len(heads) < 3 {
		t.Fatalf("found %d blocks in the seed", len(heads))
	}
	packedProgram := -1 // a compressed block after the ELF header's
	for i := 1; i < len(heads); i++ {
		if compressed[i] {
			packedProgram = heads[i]
			break
		}
	}
	if packedProgram < 0 {
		t.Fatal("the seed has no compressed program block")
	}
	type tamper struct {
		name   string
		change func([]byte)
		reason string
	}
	tests := []tamper{
		{"header-block-size", func(c []byte) { le.PutUint32(c[heads[0]:], 1<<30) }, "layout"},
		{"program-block-size", func(c []byte) { le.PutUint32(c[heads[1]:], le.Uint32(c[heads[1]:])+4) }, ""},
		{"unknown-method", func(c []byte) { c[packedProgram+8] = 99 }, "unknown method 99"},
		{"unknown-filter", func(c []byte) { c[packedProgram+9] = 0x11 }, "filter 0x11"},
		{"trailer-checksum", func(c []byte) { c[len(c)-36+8] ^= 1 }, "checksums"},
		{"end-marker", func(c []byte) { le.PutUint32(c[len(c)-36-12:], 5) }, ""},
	}
	for i, h := range heads {
		end := h + 12 + int(le.Uint32(b[h+4:]))
		if i+1 < len(heads) {
			end = heads[i+1]
		}
		for off := h + 12; off < end; off += 3 {
			tests = append(tests, tamper{fmt.Sprintf("block-byte-%#x", off), func(c []byte) { c[off] ^= 0x5a }, ""})
		}
	}
	for _, tc := range tests {
		c := bytes.Clone(b)
		tc.change(c)
		_, err := unpackBytes(c, realLimits)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v, want ErrCorrupt saying %q", tc.name, err, tc.reason)
		}
	}
}

func TestLimit(t *testing.T) {
	b := seeds(t)["tiny-amd64-lzma"]
	_, err := unpackBytes(b, Limits{MaxOutput: 64 << 10})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if _, err := unpackBytes(b, Limits{MaxOutput: 74680}); err != nil {
		t.Fatalf("a limit equal to the size must pass: %v", err)
	}
}

// FuzzUnpack: no input panics, loops or allocates past the limit, and
// every refusal says which kind it is.
func FuzzUnpack(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("\x7fELF"))
	f.Add([]byte{})
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := unpackBytes(b, Limits{MaxOutput: limit})
		if err != nil {
			if !errors.Is(err, ErrNotPacked) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(got.File) > limit || len(got.Segments) == 0 {
			t.Fatalf("restored %d bytes in %d segments", len(got.File), len(got.Segments))
		}
	})
}

// What the loader never reads (the ranges after the PT_LOADs, l_lsize, the
// trailer) may be damaged and the program still runs. Such damage is
// reported, and the PT_LOADs come back restored all the same, so the
// scanner still sees what the host runs; a wrong l_lsize alone is
// tolerated.
func TestDamagedPastTheLoader(t *testing.T) {
	b := seeds(t)["tiny-amd64-nrv2e"]
	want, err := os.ReadFile("testdata/tiny-amd64")
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	heads, _ := blockSpans(b)
	last := heads[len(heads)-1]
	loadEnd := (last + 12 + int(le.Uint32(b[last+4:])) + 3) &^ 3
	const lInfo = 0xe8
	gap := loadEnd + int(le.Uint16(b[lInfo+8:]))
	if unc := le.Uint32(b[gap:]); unc != 0x1000-0x17c {
		t.Fatalf("the seed's first range after a PT_LOAD is not where l_lsize puts it (b_info declares %d bytes)", unc)
	}
	for _, tc := range []struct {
		name   string
		change func([]byte)
		err    bool
	}{
		{"trailer-checksum", func(c []byte) { c[len(c)-36+12] ^= 1 }, true},
		{"range-after-a-load", func(c []byte) { le.PutUint32(c[gap+4:], 0) }, true},
		{"loader-size", func(c []byte) { le.PutUint16(c[lInfo+8:], 0x40) }, false},
	} {
		c := bytes.Clone(b)
		tc.change(c)
		got, err := unpackBytes(c, realLimits)
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrCorrupt)) {
			t.Fatalf("%s: error %v, want one: %v", tc.name, err, tc.err)
		}
		if got == nil {
			t.Fatalf("%s: nothing restored", tc.name)
		}
		for _, r := range loadRanges(t, want) {
			if !bytes.Equal(got.File[r[0]:r[0]+r[1]], want[r[0]:r[0]+r[1]]) {
				t.Errorf("%s: PT_LOAD at %#x not restored", tc.name, r[0])
			}
		}
		if !tc.err && !bytes.Equal(got.File, want) {
			t.Errorf("%s: the file is not restored whole", tc.name)
		}
	}
}
