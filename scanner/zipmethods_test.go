package scanner

import (
	"bytes"
	"compress/flate"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/pullgate/pullgate/internal/samples"
)

// compressZip returns data compressed as a zip member of method m holds
// it: bzip2 by the bzip2 command, the others by Go encoders; LZMA with
// the zip header (the SDK's version, the size of the properties, the
// properties) and an end-of-stream marker, as Python's zipfile writes it.
func compressZip(t testing.TB, m uint16, data []byte) []byte {
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
	case zipXz:
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case zipZstd:
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case zipLZMA:
		var l bytes.Buffer
		w, err := lzma.WriterConfig{EOSMarker: true, SizeInHeader: false}.NewWriter(&l)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		b.Write([]byte{16, 2, 5, 0})        // LZMA SDK 16.02, 5 bytes of properties
		b.Write(l.Bytes()[:5])              // the properties
		b.Write(l.Bytes()[lzma.HeaderLen:]) // the stream, past the classic header's size
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
		method uint16
	}{{"bzip2", zipBzip2}, {"LZMA", zipLZMA}, {"xz", zipXz}, {"zstd", zipZstd}} {
		e := rawEntry{name: "bin/worker", data: samples.XMRig(), method: m.method, body: compressZip(t, m.method, samples.XMRig())}
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
