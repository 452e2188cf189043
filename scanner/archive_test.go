package scanner

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/samples"
)

// zipOf builds a zip (or a jar, which is one) of files, each deflated,
// with its Unix mode in the external attributes.
func zipOf(t testing.TB, files ...tfile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		fh := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		fh.SetMode(fs.FileMode(f.mode))
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarGz(t testing.TB, files ...tfile) []byte { return gzipBytes(t, tarLayer(t, files...)) }

// xmrigRelease is the layout of XMRig's own release tarball.
func xmrigRelease() []tfile {
	return []tfile{
		reg("xmrig-6.21.0/SHA256SUMS", 0o644, "0000  xmrig\n"),
		{name: "xmrig-6.21.0/xmrig", mode: 0o755, data: samples.XMRig()},
	}
}

// makeself is a shell script that carries payload base64-encoded in
// lines of 76 characters and unpacks it with base64 -d | tar xz.
func makeself(payload []byte) string {
	enc := base64.StdEncoding.EncodeToString(payload)
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# self-extracting installer\ncat <<'EOF' | base64 -d | tar xz -C /tmp\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\nEOF\n/tmp/xmrig-6.21.0/xmrig\n")
	return b.String()
}

func scanOne(t *testing.T, s *Scanner, files ...tfile) (Result, error) {
	t.Helper()
	return s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, files...)), Interactive)
}

func TestArchivesInLayers(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := tfile{name: "bin/xmrig", mode: 0o755, data: samples.XMRig()}
	// Incompressible bytes so the makeself payload is longer than the
	// shortest base64 run that is decoded.
	padding := tfile{name: "share/doc/README", mode: 0o644, data: samples.Filler(8 << 10)}
	depth3 := zipOf(t, tfile{name: "b.tar.gz", mode: 0o644, data: tarGz(t,
		tfile{name: "c.jar", mode: 0o644, data: zipOf(t, miner)})})
	depth4 := zipOf(t, tfile{name: "b.tar.gz", mode: 0o644, data: tarGz(t,
		tfile{name: "c.jar", mode: 0o644, data: zipOf(t,
			tfile{name: "d.tar.gz", mode: 0o644, data: tarGz(t, miner)})})})

	cases := []struct {
		name     string
		file     tfile
		wantRule string
		wantPath string
	}{
		{"tar.gz release", tfile{name: "opt/x/xmrig.tar.gz", mode: 0o644, data: tarGz(t, xmrigRelease()...)},
			"MinerXMRig", "/opt/x/xmrig.tar.gz!xmrig-6.21.0/xmrig"},
		{"plain tar", tfile{name: "opt/x/xmrig.tar", mode: 0o644, data: tarLayer(t, xmrigRelease()...)},
			"MinerXMRig", "/opt/x/xmrig.tar!xmrig-6.21.0/xmrig"},
		{"zip", tfile{name: "opt/x/xmrig.zip", mode: 0o644, data: zipOf(t, xmrigRelease()...)},
			"MinerXMRig", "/opt/x/xmrig.zip!xmrig-6.21.0/xmrig"},
		{"jar with a native miner", tfile{name: "app/lib/native.jar", mode: 0o644, data: zipOf(t,
			reg("META-INF/MANIFEST.MF", 0o644, "Manifest-Version: 1.0\n"),
			tfile{name: "native/linux-x86_64/libhelper.so", mode: 0o644, data: samples.XMRig()})},
			"MinerXMRig", "/app/lib/native.jar!native/linux-x86_64/libhelper.so"},
		{"tar.xz", tfile{name: "opt/x/xmrig.tar.xz", mode: 0o644, data: cli(t, tarLayer(t, xmrigRelease()...), "xz", "-c")},
			"MinerXMRig", "/opt/x/xmrig.tar.xz!xmrig-6.21.0/xmrig"},
		{"tar.bz2", tfile{name: "opt/x/xmrig.tbz2", mode: 0o644, data: cli(t, tarLayer(t, xmrigRelease()...), "bzip2", "-c")},
			"MinerXMRig", "/opt/x/xmrig.tbz2!xmrig-6.21.0/xmrig"},
		{"tar.zst", tfile{name: "opt/x/xmrig.tar.zst", mode: 0o644, data: zstdBytes(t, tarLayer(t, xmrigRelease()...))},
			"MinerXMRig", "/opt/x/xmrig.tar.zst!xmrig-6.21.0/xmrig"},
		{"gz of the binary", tfile{name: "opt/x/xmrig.gz", mode: 0o644, data: gzipBytes(t, samples.XMRig())},
			"MinerXMRig", "/opt/x/xmrig.gz!xmrig"},
		{"found by magic, not by name", tfile{name: "usr/share/icons/logo.png", mode: 0o644, data: zipOf(t, xmrigRelease()...)},
			"MinerXMRig", "/usr/share/icons/logo.png!xmrig-6.21.0/xmrig"},
		{"name rule on a member", tfile{name: "opt/k.tar.gz", mode: 0o644, data: tarGz(t, reg("kdevtmpfsi", 0o755, "#!/bin/sh\nsleep 1\n"))},
			"KinsingBinary", "/opt/k.tar.gz!kdevtmpfsi"},
		{"name rule on a hard link in a member tar", tfile{name: "opt/l.tar.gz", mode: 0o644, data: tarGz(t, reg("bin/helper", 0o755, "#!/bin/sh\nsleep 1\n"),
			tfile{name: "bin/kdevtmpfsi", mode: 0o755, typeflag: tar.TypeLink, link: "bin/helper"})},
			"KinsingBinary", "/opt/l.tar.gz!bin/kdevtmpfsi"},
		{"depth 3", tfile{name: "opt/a.zip", mode: 0o644, data: depth3},
			"MinerXMRig", "/opt/a.zip!b.tar.gz!c.jar!bin/xmrig"},
		{"depth 4 is not unpacked and refuses", tfile{name: "opt/a.zip", mode: 0o644, data: depth4},
			ArchiveTooDeepRule, "/opt/a.zip!b.tar.gz!c.jar!d.tar.gz"},
		{"makeself script", tfile{name: "tmp/install.sh", mode: 0o755, data: []byte(makeself(tarGz(t, append(xmrigRelease(), padding)...)))},
			"MinerXMRig", "/tmp/install.sh!base64@%d!xmrig-6.21.0/xmrig"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, reg("etc/hostname", 0o644, "box\n"), c.file)
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			want := c.wantPath
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, bytes.Index(c.file.data, []byte("H4sI")))
			}
			f, ok := findingOf(res.Findings, c.wantRule)
			if !ok || f.Path != want {
				t.Fatalf("findings %+v, want %s at %s", res.Findings, c.wantRule, want)
			}
			if f.File != "/"+c.file.name {
				t.Errorf("finding's File = %q, want the layer's file /%s", f.File, c.file.name)
			}
			if !DefaultPolicy().Decide(res.Findings).Blocked {
				t.Errorf("not blocked: %+v", res.Findings)
			}
		})
	}
}

// A finding inside an archive weighs as it would outside: the same rule,
// category and severity, so the same decision.
func TestArchiveFindingWeighsTheSame(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	outside, err := scanOne(t, s, tfile{name: "xmrig-6.21.0/xmrig", mode: 0o755, data: samples.XMRig()})
	if err != nil {
		t.Fatal(err)
	}
	inside, err := scanOne(t, s, tfile{name: "opt/x.tar.gz", mode: 0o644, data: tarGz(t, xmrigRelease()...)})
	if err != nil {
		t.Fatal(err)
	}
	strip := func(fs []Finding) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Rule+"/"+f.Category+"/"+f.Severity)
		}
		return out
	}
	if a, b := strip(outside.Findings), strip(inside.Findings); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("outside %v, inside %v", a, b)
	}
	if a, b := DefaultPolicy().Decide(outside.Findings), DefaultPolicy().Decide(inside.Findings); a.Blocked != b.Blocked || len(a.Blocking) != len(b.Blocking) {
		t.Errorf("outside %+v, inside %+v", a, b)
	}
}

func TestBenignArchivesPass(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	class := append([]byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 61}, samples.Filler(2000)...)
	script, binary := samples.Benign()
	cases := []struct {
		name string
		file tfile
	}{
		{"jar of class files", tfile{name: "app/app.jar", mode: 0o644, data: zipOf(t,
			reg("META-INF/MANIFEST.MF", 0o644, "Manifest-Version: 1.0\nMain-Class: com.example.Main\n"),
			tfile{name: "com/example/Main.class", mode: 0o644, data: class},
			tfile{name: "com/example/Util.class", mode: 0o644, data: class})}},
		{"gz of text", tfile{name: "usr/share/doc/changelog.gz", mode: 0o644, data: gzipBytes(t, []byte(strings.Repeat("fixed a bug in the parser\n", 500)))}},
		{"tar.gz of tools", tfile{name: "opt/tools.tar.gz", mode: 0o644, data: tarGz(t,
			tfile{name: "bin/tool", mode: 0o755, data: binary}, tfile{name: "bin/run.sh", mode: 0o755, data: script})}},
		{"script with base64 of text", tfile{name: "usr/bin/setup.sh", mode: 0o755,
			data: []byte(makeself([]byte(strings.Repeat("a line of a README file\n", 400))))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, c.file)
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if len(res.Findings) != 0 {
				t.Errorf("findings %+v, want none", res.Findings)
			}
		})
	}
}

func TestArchiveLimits(t *testing.T) {
	zeros := make([]byte, 64<<20)
	gzBomb := gzipBytes(t, gzipBytes(t, zeros))
	zipBomb := zipOf(t, tfile{name: "a", mode: 0o644, data: zeros}, tfile{name: "b", mode: 0o644, data: zeros})
	many := make([]tfile, 50)
	for i := range many {
		many[i] = reg(fmt.Sprintf("f%d", i), 0o644, "x")
	}
	cases := []struct {
		name   string
		limits Limits
		file   tfile
	}{
		{"nested gzip bomb", Limits{MaxLayerBytes: 32 << 20},
			tfile{name: "opt/bomb.gz", mode: 0o644, data: gzBomb}},
		{"zip bomb", Limits{MaxLayerBytes: 32 << 20},
			tfile{name: "opt/bomb.zip", mode: 0o644, data: zipBomb}},
		{"zip member over MaxFileBytes", Limits{MaxFileBytes: 1 << 20},
			tfile{name: "opt/big.zip", mode: 0o644, data: zipBomb}},
		{"members over MaxFiles", Limits{MaxFiles: 20},
			tfile{name: "opt/many.tar.gz", mode: 0o644, data: tarGz(t, many...)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: c.limits})
			res, err := scanOne(t, s, c.file)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v (findings %+v), want ErrLimit", err, res.Findings)
			}
		})
	}
}

func TestArchiveDepthAndSize(t *testing.T) {
	miner := tfile{name: "xmrig", mode: 0o755, data: samples.XMRig()}
	inZip := zipOf(t, tfile{name: "x.tar.gz", mode: 0o644, data: tarGz(t, miner)})

	t.Run("MaxArchiveDepth 1", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxArchiveDepth: 1}})
		res, err := scanOne(t, s, tfile{name: "opt/a.zip", mode: 0o644, data: inZip})
		if err != nil {
			t.Fatal(err)
		}
		f, ok := findingOf(res.Findings, ArchiveTooDeepRule)
		if !ok || f.Path != "/opt/a.zip!x.tar.gz" || !DefaultPolicy().Decide(res.Findings).Blocked {
			t.Errorf("findings %+v, want %s at /opt/a.zip!x.tar.gz, blocking", res.Findings, ArchiveTooDeepRule)
		}
	})
	t.Run("larger than the window", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})
		big := tarGz(t, tfile{name: "pad", mode: 0o644, data: samples.Filler(2 * minWindow)}, miner)
		res, err := scanOne(t, s, tfile{name: "opt/big.tar.gz", mode: 0o644, data: big})
		if err != nil {
			t.Fatal(err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/opt/big.tar.gz!xmrig") || !DefaultPolicy().Decide(res.Findings).Blocked {
			t.Errorf("findings %+v, want MinerXMRig at /opt/big.tar.gz!xmrig, blocking", res.Findings)
		}
	})
	t.Run("a member announcing more than it holds", func(t *testing.T) {
		// As Go's own archive/tar test data does: a header for a 16 GiB
		// file, and a few bytes. Not a bomb: no byte beyond the limits is
		// produced.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: "tmp/16gig.txt", Mode: 0o644, Size: 16 << 30}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte("hello"))
		s := newTestScanner(t, Options{Workers: 2})
		res, err := scanOne(t, s, tfile{name: "src/testdata/writer-big.tar", mode: 0o644, data: buf.Bytes()})
		if err != nil {
			t.Fatalf("ScanLayer: %v", err)
		}
		if _, ok := findingOf(res.Findings, ArchiveUnreadableRule); !ok || DefaultPolicy().Decide(res.Findings).Blocked {
			t.Errorf("findings %+v, want a warning %s", res.Findings, ArchiveUnreadableRule)
		}
	})
	t.Run("truncated gzip", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2})
		blob := tarGz(t, miner, tfile{name: "pad", mode: 0o644, data: samples.Filler(64 << 10)})
		res, err := scanOne(t, s, tfile{name: "opt/cut.tar.gz", mode: 0o644, data: blob[:len(blob)-1000]})
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := findingOf(res.Findings, "MinerXMRig"); !ok || f.Path != "/opt/cut.tar.gz!xmrig" {
			t.Errorf("findings %+v, want MinerXMRig at /opt/cut.tar.gz!xmrig", res.Findings)
		}
		if f, ok := findingOf(res.Findings, ArchiveUnreadableRule); !ok || f.Path != "/opt/cut.tar.gz" {
			t.Errorf("findings %+v, want %s at /opt/cut.tar.gz", res.Findings, ArchiveUnreadableRule)
		}
	})
}

// FuzzUnarchive feeds the archive unpacker arbitrary content as a file in
// a layer. The layer itself is sound, so the scan must end with a verdict
// or ErrLimit (an archive that does not decode is a finding, never
// ErrCorrupt), never a crash or a hang; every finding names the layer's
// file. Seeds: testdata/fuzz/FuzzUnarchive (archives of every kind, nested,
// a makeself script, a truncated stream) and the ones below.
func FuzzUnarchive(f *testing.F) {
	miner := tfile{name: "xmrig", mode: 0o755, data: samples.XMRig()}
	f.Add(tarGz(f, miner))
	f.Add(zipOf(f, miner))
	f.Add(zipOf(f, tfile{name: "a.tar.gz", mode: 0o644, data: tarGz(f, tfile{name: "b.zip", mode: 0o644, data: zipOf(f, miner)})}))
	f.Add([]byte(makeself(tarGz(f, miner, tfile{name: "pad", mode: 0o644, data: samples.Filler(4 << 10)}))))
	// A script followed by its .tar.gz, an ar archive, an .lzma file.
	f.Add(selfExtracting(tarGz(f, miner), "z"))
	f.Add(fmt.Appendf(nil, "!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\nxmrig/          0           0     0     100755  %-10d`\n%s", len(miner.data), miner.data))
	f.Add(cli(f, miner.data, "xz", "--format=lzma", "-c"))
	// Streams broken at their end, behind a script; a zip entry with no
	// directory behind one; a zstd frame cut in its checksum.
	dropper := []byte(samples.KinsingDropper())
	gz := gzipBytes(f, dropper)
	f.Add(append([]byte("# sh\ntail -c +30 \"$0\" | gzip -dc | sh\n"), gz[:len(gz)-3]...))
	f.Add(append([]byte("#!/bin/sh\nB='\x1b'\n"), append(bytes.Clone(gz), "trailing"...)...))
	f.Add(append([]byte("#!/bin/sh\n"), zipLocalOnly(dropper, 8)...))
	zst := cli(f, dropper, "zstd", "-c")
	f.Add(zst[:len(zst)-2])
	// Larger than the fuzz scanner's window: unpacked as a stream, and
	// through a spool file.
	f.Add(tarGz(f, pad(300<<10), miner))
	f.Add(zipOf(f, pad(300<<10), miner))
	// A tar's own bytes (tarown.go): a PAX record and a padding holding
	// streams, a header that starts with a gzip header, a sparse member;
	// a v7 tar; cpio, newc and odc (cpio.go).
	f.Add(slices.Concat(tarEntry("PaxHeaders/a", 'x', paxRecord("comment", gz)), tarEntry("a", '0', dropper[:10]), tarEnd))
	f.Add(slices.Concat(gzipHeaderEntry(dropper), tarEnd))
	f.Add(slices.Concat(tarEntry("sp", 'S', gz), tarEnd))
	v7 := rawHeader("xmrig", '0', len(miner.data))
	clear(v7[257:265])
	sumHeader(v7)
	f.Add(slices.Concat(v7, pad512(miner.data), tarEnd))
	f.Add(slices.Concat(newcEntry("xmrig", gz, miner.data, 0o100755), newcEntry("TRAILER!!!", nil, nil, 0)))
	f.Add(fmt.Appendf(nil, "070707000000000000100755000000000000000001000000%011o%06o%011oxmrig\x00%s", 0, 6, len(dropper), dropper))
	// pack(1) files, one and two members; an .lzma file damaged after
	// its payload (version 15).
	packed := packEncode(f, dropper)
	f.Add(packed)
	f.Add(slices.Concat([]byte("#!/bin/sh\n"), packed, packed))
	lz := cli(f, dropper, "xz", "--format=lzma", "-c")
	f.Add(append(bytes.Clone(lz[:len(lz)-4]), "damaged"...))
	// Frames of several formats that zstd -dc and gzip -dc join
	// (joined.go).
	half := len(dropper) / 2
	f.Add(slices.Concat(cli(f, dropper[:half], "zstd", "-c", "-q"), gzipBytes(f, dropper[half:]), cli(f, dropper[:10], "xz", "-c"),
		cli(f, dropper[:10], "lz4", "-c", "-q"), cli(f, dropper[:10], "xz", "--format=lzma", "-c")))
	f.Add(slices.Concat(gzipBytes(f, dropper[:half]), packEncode(f, dropper[half:]), lzwCompress(dropper, 16)))
	// ISO 9660 images: a file of several extents, an .lzma file
	// (iso9660.go).
	f.Add(multiExtentISO(f, [][]byte{dropper[:half], dropper[half:]}))
	f.Add(bsdtarArchive(f, "tool.lzma", cli(f, dropper, "xz", "--format=lzma", "-c"), "--format", "iso9660"))
	// Zips read from their local headers (ziplocal_test.go), but the one
	// behind a prefix of 1.5 MiB, slow to minimize.
	for _, c := range zipLocalCases(f) {
		if len(c.zip) < 1<<20 {
			f.Add(c.zip)
		}
	}
	for _, c := range zipHostileCases(f) {
		if len(c.zip) < 1<<20 {
			f.Add(c.zip)
		}
	}
	s := newTestScanner(f, Options{Workers: 2, Limits: Limits{MaxLayerBytes: 16 << 20, MaxFiles: 10000, Window: minWindow, LayerTimeout: 30 * time.Second}})
	f.Fuzz(func(t *testing.T, content []byte) {
		layer := tarLayer(t, tfile{name: "opt/f", mode: 0o755, data: content})
		res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
		if err != nil {
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want a verdict or ErrLimit", err)
			}
			return
		}
		for _, fd := range res.Findings {
			if fd.FilePath() != "/opt/f" {
				t.Fatalf("finding %+v does not name the layer's file /opt/f", fd)
			}
		}
	})
}

func TestBase64Payloads(t *testing.T) {
	payload := samples.Filler(4002) // a multiple of 3: no padding to end the run
	enc := base64.StdEncoding.EncodeToString(payload)
	var wrapped strings.Builder
	for s := enc; len(s) > 0; {
		n := min(76, len(s))
		wrapped.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	cases := []struct {
		name   string
		script string
		want   []byte // nil: no payload
	}{
		{"one quoted line", "#!/bin/sh\necho '" + enc + "' | base64 -d | sh\n", payload},
		{"here-document after a path, then a short word", "#!/bin/sh\nbase64 -d <<E | tar x -C /tmp\n" + wrapped.String() + "DATA\n/tmp/run\n", payload},
		{"too short", "#!/bin/sh\necho '" + enc[:4000] + "'\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := base64Payloads([]byte(c.script))
			if c.want == nil {
				if len(got) != 0 {
					t.Fatalf("decoded %d payloads, want none", len(got))
				}
				return
			}
			// One run, decoded at each of base64's four alignments.
			if len(got) != 4 || got[0].skip != 0 || !bytes.Equal(got[0].decode(), c.want) {
				t.Fatalf("decoded %d payloads, want the %d byte payload at the first of four alignments", len(got), len(c.want))
			}
			if got[0].offset != strings.Index(c.script, enc[:8]) {
				t.Fatalf("offset %d, want %d", got[0].offset, strings.Index(c.script, enc[:8]))
			}
		})
	}
}

// A zip member that cannot be opened (an unknown method, as encryption
// gives) is reported, and the members after it are still scanned.
func TestZipMemberUnreadable(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "secret.bin", Method: 99, CompressedSize64: 4, UncompressedSize64: 4})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abcd"))
	fh := &zip.FileHeader{Name: "bin/xmrig", Method: zip.Deflate}
	fh.SetMode(0o755)
	w, err = zw.CreateHeader(fh)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(samples.XMRig())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	s := newTestScanner(t, Options{Workers: 2})
	res, err := scanOne(t, s, tfile{name: "opt/a.zip", mode: 0o644, data: buf.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := findingOf(res.Findings, ArchiveUnreadableRule); !ok || f.Path != "/opt/a.zip!secret.bin" || f.File != "/opt/a.zip" {
		t.Errorf("findings %+v, want %s on /opt/a.zip!secret.bin", res.Findings, ArchiveUnreadableRule)
	}
	if f, ok := findingOf(res.Findings, "MinerXMRig"); !ok || f.Path != "/opt/a.zip!bin/xmrig" {
		t.Errorf("findings %+v, want MinerXMRig on /opt/a.zip!bin/xmrig", res.Findings)
	}
}

// An artifact that is an archive is looked into as a layer's file is.
func TestArtifactArchive(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	res, err := s.ScanArtifact(context.Background(), bytes.NewReader(zipOf(t, xmrigRelease()...)), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := findingOf(res.Findings, "MinerXMRig"); !ok || f.Path != "/!xmrig-6.21.0/xmrig" || f.File != "/" {
		t.Errorf("findings %+v, want MinerXMRig at /!xmrig-6.21.0/xmrig", res.Findings)
	}
}
