package scanner

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ulikunitz/xz/lzma"

	"github.com/pullgate/pullgate/internal/samples"
)

// zipLZMANoEnd asks compressZip for an LZMA member without an end marker.
const zipLZMANoEnd = 0x10000 + zipLZMA

// compressZip returns data compressed as a zip member of method m holds
// it: bzip2 by the bzip2 command, deflate by compress/flate, LZMA without
// an end marker here, the others as samples.ZipMember writes them.
func compressZip(t testing.TB, m int, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch m {
	case zipBzip2:
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bzip2 (make deps installs it): %v", err)
		}
		return out
	case zipXz, zipZstd, zipLZMA:
		return samples.ZipMember(uint16(m), data)
	case zipLZMANoEnd:
		// No end marker: the size is known from the zip's headers, as
		// liblzma's LZMA1EXT encoder writes it.
		var l bytes.Buffer
		w, err := lzma.WriterConfig{SizeInHeader: true, Size: int64(len(data))}.NewWriter(&l)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		b.Write([]byte{16, 2, 5, 0})        // LZMA SDK 16.02, 5 bytes of properties
		b.Write(l.Bytes()[:5])              // the properties
		b.Write(l.Bytes()[lzma.HeaderLen:]) // the stream, past the classic header's size
	case 8:
		fw, _ := flate.NewWriter(&b, flate.DefaultCompression)
		fw.Write(data)
		fw.Close()
	default:
		t.Fatalf("no encoder for method %d", m)
	}
	return b.Bytes()
}

// zipMethodCases are zips whose miner is compressed with a method besides
// stored and deflated that bsdtar, unzip or Python unpack: listed in the
// directory, hidden from it, and sized only after its data.
func zipMethodCases(t testing.TB) []zipLocalCase {
	clean := rawEntry{name: "a.txt", data: samples.Filler(8 << 10)}
	var out []zipLocalCase
	for _, m := range []struct {
		name   string
		method uint16 // as the headers say it
		codec  int    // as compressZip writes it
	}{
		{"bzip2", zipBzip2, zipBzip2}, {"LZMA", zipLZMA, zipLZMA}, {"xz", zipXz, zipXz}, {"zstd", zipZstd, zipZstd},
		{"LZMA without an end marker", zipLZMA, zipLZMANoEnd},
		// bsdtar reads the method's low byte alone.
		{"bzip2 as method 0x10c", 0x10c, zipBzip2}, {"deflated as method 0xff08", 0xff08, 8},
	} {
		e := rawEntry{name: "bin/worker", data: samples.XMRig(), method: m.method, body: compressZip(t, m.codec, samples.XMRig())}
		hidden, after := e, e
		hidden.name, hidden.hidden = "bin/hidden", true
		after.name, after.hidden, after.descriptor = "bin/after", true, true
		out = append(out,
			zipLocalCase{m.name + " member", rawZip(t, []rawEntry{clean, e}, false), []string{"bin/worker"}},
			zipLocalCase{"hidden " + m.name + " entry", rawZip(t, []rawEntry{clean, hidden, clean}, false), []string{"bin/hidden"}},
			zipLocalCase{"hidden " + m.name + " entry sized after its data", rawZip(t, []rawEntry{clean, after}, false), []string{"bin/after"}},
		)
	}
	return out
}

// A member of a method pullgate does not decode is refused when an
// extractor on a host unpacks it, and only reported when none does.
// Deflate64 is deflate with a larger window and longer matches, so a
// deflate stream with no match at all is one: unzip writes out the miner
// from it, which proves the hole the refusal closes.
func TestZipMethodsNotDecoded(t *testing.T) {
	var d bytes.Buffer
	fw, _ := flate.NewWriter(&d, flate.HuffmanOnly)
	fw.Write(samples.XMRig())
	fw.Close()
	deflate64 := rawEntry{name: "bin/worker", data: samples.XMRig(), method: 9, body: d.Bytes()}
	ppmd := rawEntry{name: "bin/worker", data: samples.XMRig(), method: 98, body: samples.Filler(4 << 10)}
	unknown := rawEntry{name: "bin/worker", data: samples.XMRig(), method: 77, body: samples.Filler(4 << 10)}
	hidden := deflate64
	hidden.hidden = true
	randomised := rawEntry{name: "bin/worker", data: samples.XMRig(), method: zipBzip2, body: randomisedBzip2(t, samples.XMRig())}
	bcj := rawEntry{name: "bin/worker", data: samples.XMRig(), method: zipXz, body: cli(t, samples.XMRig(), "xz", "-c", "--x86", "--lzma2")}

	z := rawZip(t, []rawEntry{deflate64}, false)
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "app.zip")
	if err := os.WriteFile(zipPath, z, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unzip", "-o", zipPath, "-d", dir).CombinedOutput(); err != nil {
		t.Fatalf("unzip (make deps installs it): %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "bin/worker")); err != nil || !bytes.Equal(got, samples.XMRig()) {
		t.Fatalf("unzip did not write out the deflate64 member whole (%v): the case proves nothing", err)
	}

	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range []struct {
		name   string
		zip    []byte
		refuse bool
	}{
		{"deflate64, which unzip unpacks", z, true},
		{"deflate64 entry hidden from the directory", rawZip(t, []rawEntry{{name: "a.txt", data: samples.Filler(8 << 10)}, hidden}, false), true},
		{"PPMd, which bsdtar unpacks", rawZip(t, []rawEntry{ppmd}, false), true},
		{"a method no extractor knows", rawZip(t, []rawEntry{unknown}, false), false},
		{"bzip2 in the randomised mode, which libbz2 unpacks", rawZip(t, []rawEntry{randomised}, false), true},
		{"xz with the x86 BCJ filter, which bsdtar unpacks", rawZip(t, []rawEntry{bcj}, false), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: "opt/app.zip", mode: 0o644, data: c.zip})
			if err != nil {
				t.Fatal(err)
			}
			severity := SeverityMedium
			if c.refuse {
				severity = SeverityHigh
			}
			found := false
			for _, f := range res.Findings {
				found = found || f.Rule == ArchiveUnreadableRule && f.Severity == severity && f.Path == "/opt/app.zip!bin/worker"
			}
			if !found {
				t.Errorf("no %s %s finding on /opt/app.zip!bin/worker; findings %+v", severity, ArchiveUnreadableRule, res.Findings)
			}
			if refused := len(res.Blocking()) > 0; refused != c.refuse {
				t.Errorf("refused: %v, want %v; findings %+v", refused, c.refuse, res.Findings)
			}
		})
	}
}

// randomisedBzip2 is data compressed by bzip2 with its first block's
// randomised bit set (the bit after the block's magic and CRC), a mode
// of bzip2 0.9.0 that libbz2 still unpacks and Go's compress/bzip2
// refuses.
func randomisedBzip2(t testing.TB, data []byte) []byte {
	b := compressZip(t, zipBzip2, data)
	b = bytes.Clone(b)
	b[4+6+4] |= 0x80
	return b
}

// Outside zips the same decoders read compressed files: one in a mode or
// with a filter that bzip2 or xz unpack and pullgate cannot is refused,
// and a zstd file whose window is over the limit refuses the layer.
func TestCompressedFileNotDecodedRefused(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"opt/x.bz2", randomisedBzip2(t, samples.XMRig())},
		{"opt/x.xz", cli(t, samples.XMRig(), "xz", "-c", "--x86", "--lzma2")},
		{"opt/x.tar.xz", cli(t, tarLayer(t, tfile{name: "xmrig", mode: 0o755, data: samples.XMRig()}), "xz", "-c", "--delta", "--lzma2")},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: c.name, mode: 0o644, data: c.data})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range res.Findings {
				found = found || f.Rule == ArchiveUnreadableRule && f.Severity == SeverityHigh
			}
			if !found || len(res.Blocking()) == 0 {
				t.Errorf("not refused with a high %s; findings %+v", ArchiveUnreadableRule, res.Findings)
			}
		})
	}
	big := cli(t, samples.XMRig(), "zstd", "-c", "-q", "--zstd=wlog=27")
	if _, err := scanOne(t, s, tfile{name: "opt/x.zst", mode: 0o644, data: big}); !errors.Is(err, ErrLimit) {
		t.Errorf("a zstd file with a 128 MiB window: err %v, want ErrLimit", err)
	}
	z := rawZip(t, []rawEntry{{name: "bin/worker", data: samples.XMRig(), method: zipZstd, body: big}}, false)
	if _, err := scanOne(t, s, tfile{name: "opt/app.zip", mode: 0o644, data: z}); !errors.Is(err, ErrLimit) {
		t.Errorf("a zstd zip member with a 128 MiB window: err %v, want ErrLimit", err)
	}
}

// Many tiny bzip2 members, each a decoder to set up, are refused once
// their setup has cost what MaxLayerBytes allows (chargeDecoder).
func TestManyBzip2MembersBounded(t *testing.T) {
	one := compressZip(t, zipBzip2, []byte("x"))
	entries := make([]rawEntry, 1000)
	for i := range entries {
		entries[i] = rawEntry{name: fmt.Sprintf("d/f%d", i), data: []byte("x"), method: zipBzip2, body: one}
	}
	s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxLayerBytes: 128 << 20}})
	if _, err := scanOne(t, s, tfile{name: "opt/app.zip", mode: 0o644, data: rawZip(t, entries, false)}); !errors.Is(err, ErrLimit) {
		t.Fatalf("1,000 bzip2 members of 900 kB blocks (a sixteenth: 214 MiB) against 128 MiB: err %v, want ErrLimit", err)
	}
}
