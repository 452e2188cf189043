package scanner

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// largeSizes are the padding that takes an archive past the window, and
// the limits that go with it: the default 16 MiB window and 20 MiB; under
// the race detector, the smallest window and 1 MiB (the same paths, at a
// cost the race detector can afford).
func largeSizes() (int, Limits) {
	if raceEnabled || testing.Short() {
		return 1 << 20, Limits{Window: minWindow}
	}
	return 20 << 20, Limits{}
}

// pad is incompressible filler that takes an archive past the default
// 16 MiB window however it is compressed.
func pad(n int) tfile {
	return tfile{name: "xmrig-6.21.0/data.bin", mode: 0o644, data: samples.Filler(n)}
}

// storedZip builds a zip whose members are stored, not deflated: the
// miner's bytes are in the zip as they are.
func storedZip(t testing.TB, files ...tfile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		fh := &zip.FileHeader{Name: f.name, Method: zip.Store}
		fh.SetMode(0o755)
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Archives larger than the scan window are unpacked too, as a stream or
// through a spool file, and a miner in them is refused with its whole
// path.
func TestLargeArchives(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := tfile{name: "xmrig-6.21.0/xmrig", mode: 0o755, data: samples.XMRig()}
	release := []tfile{pad(big), miner}
	paddedBinary := append(samples.XMRig(), samples.Filler(big)...)
	bigZip := zipOf(t, release...)
	cases := []struct {
		name     string
		data     []byte
		file     string
		wantPath string
	}{
		{"tar.gz", tarGz(t, release...), "opt/x/xmrig.tar.gz", "/opt/x/xmrig.tar.gz!xmrig-6.21.0/xmrig"},
		{"tar", tarLayer(t, release...), "opt/x/xmrig.tar", "/opt/x/xmrig.tar!xmrig-6.21.0/xmrig"},
		{"tar.zst", zstdBytes(t, tarLayer(t, release...)), "opt/x/xmrig.tar.zst", "/opt/x/xmrig.tar.zst!xmrig-6.21.0/xmrig"},
		{"zip", bigZip, "opt/x/xmrig.zip", "/opt/x/xmrig.zip!xmrig-6.21.0/xmrig"},
		{"gz of the binary", gzipBytes(t, paddedBinary), "opt/x/xmrig.gz", "/opt/x/xmrig.gz!xmrig"},
		{"zip in a gz (of unknown size)", gzipBytes(t, bigZip), "opt/x/app.zip.gz", "/opt/x/app.zip.gz!app.zip!xmrig-6.21.0/xmrig"},
		{"zip in a tar.gz, both large", tarGz(t, tfile{name: "lib/app.jar", mode: 0o644, data: bigZip}),
			"opt/x/bundle.tgz", "/opt/x/bundle.tgz!lib/app.jar!xmrig-6.21.0/xmrig"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.data) <= int(s.limits.Window) {
				t.Fatalf("the archive is %d bytes, not larger than the window", len(c.data))
			}
			res, err := scanOne(t, s, tfile{name: c.file, mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Findings, "MinerXMRig", c.wantPath) {
				t.Fatalf("findings %+v, want MinerXMRig at %s", res.Findings, c.wantPath)
			}
			if d := DefaultPolicy().Decide(res.Findings); !d.Blocked {
				t.Errorf("not blocked: %+v", res.Findings)
			}
			if res.Bytes < int64(len(c.data)) {
				t.Errorf("Bytes = %d, want at least the archive's %d", res.Bytes, len(c.data))
			}
		})
	}
}

// What a large archive holds past where its unpacker stopped is scanned
// as bytes: a miner after a gzip stream, and the members of a cut
// .tar.gz up to the cut.
func TestLargeArchiveLeftovers(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := tfile{name: "xmrig", mode: 0o755, data: samples.XMRig()}

	t.Run("bytes after the compressed stream", func(t *testing.T) {
		data := append(gzipBytes(t, samples.Filler(big)), samples.XMRig()...)
		res, err := scanOne(t, s, tfile{name: "opt/f.gz", mode: 0o644, data: data})
		if err != nil {
			t.Fatal(err)
		}
		// The program is not at the start of a window, so its command
		// line, not its ELF-anchored rule, finds it.
		if !hasFinding(res.Findings, "MinerCommandLine", "/opt/f.gz") || !hasFinding(res.Findings, ArchiveUnreadableRule, "/opt/f.gz") {
			t.Errorf("findings %+v, want MinerCommandLine and %s on /opt/f.gz", res.Findings, ArchiveUnreadableRule)
		}
	})
	t.Run("cut short", func(t *testing.T) {
		data := tarGz(t, miner, pad(big))
		res, err := scanOne(t, s, tfile{name: "opt/cut.tar.gz", mode: 0o644, data: data[:len(data)-4096]})
		if err != nil {
			t.Fatal(err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/opt/cut.tar.gz!xmrig") || !hasFinding(res.Findings, ArchiveUnreadableRule, "/opt/cut.tar.gz") {
			t.Errorf("findings %+v, want MinerXMRig in the member and %s", res.Findings, ArchiveUnreadableRule)
		}
	})
	t.Run("a tar followed by a program", func(t *testing.T) {
		data := append(tarLayer(t, pad(big)), samples.XMRig()...)
		res, err := scanOne(t, s, tfile{name: "opt/t.tar", mode: 0o644, data: data})
		if err != nil {
			t.Fatal(err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/opt/t.tar") {
			t.Errorf("findings %+v, want MinerXMRig on /opt/t.tar", res.Findings)
		}
	})
	t.Run("too deep", func(t *testing.T) {
		limits := limits
		limits.MaxArchiveDepth = 1
		s := newTestScanner(t, Options{Workers: 2, Limits: limits})
		data := zipOf(t, tfile{name: "inner.tar.gz", mode: 0o644, data: tarGz(t, pad(big), miner)})
		res, err := scanOne(t, s, tfile{name: "opt/a.zip", mode: 0o644, data: data})
		if err != nil {
			t.Fatal(err)
		}
		if !hasFinding(res.Findings, ArchiveTooDeepRule, "/opt/a.zip!inner.tar.gz") {
			t.Errorf("findings %+v, want %s on the inner archive", res.Findings, ArchiveTooDeepRule)
		}
	})
}

// Bombs larger than the window stop at the layer's limits as small ones
// do, and a zip whose directory alone would fill memory is refused.
func TestLargeArchiveLimits(t *testing.T) {
	big, limits := largeSizes()
	zeros := make([]byte, 96<<20)
	small := int64(64 << 20)
	if big < 16<<20 {
		zeros, small = zeros[:8<<20], 4<<20
	}
	with := func(l Limits) Limits {
		l.Window = limits.Window
		return l
	}
	longName := strings.Repeat("n", 65000)
	var longNames []tfile
	for i := range 300 {
		longNames = append(longNames, tfile{name: longName + string(rune('a'+i%26)) + strings.Repeat("x", i/26), mode: 0o644})
	}
	cases := []struct {
		name   string
		limits Limits
		data   []byte
		want   string
	}{
		{"tar.gz bomb", with(Limits{MaxLayerBytes: small}), tarGz(t, pad(big), tfile{name: "z", mode: 0o644, data: zeros}), "MaxLayerBytes"},
		{"zip bomb", with(Limits{MaxLayerBytes: small}), zipOf(t, pad(big), tfile{name: "z", mode: 0o644, data: zeros}), "MaxLayerBytes"},
		{"zip member over MaxFileBytes", with(Limits{MaxFileBytes: small}), zipOf(t, pad(big), tfile{name: "z", mode: 0o644, data: zeros}), "MaxFileBytes"},
		{"zip directory over its bound", with(Limits{}), zipOf(t, append([]tfile{pad(big)}, longNames...)...), "central directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: c.limits})
			res, err := scanOne(t, s, tfile{name: "opt/bomb", mode: 0o644, data: c.data})
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v (findings %+v), want ErrLimit naming %s", err, res.Findings, c.want)
			}
		})
	}
}

// A large archive is unpacked with memory of a few windows, never the
// archive: a .tar.gz streamed, a zip spooled to disk.
func TestLargeArchiveMemory(t *testing.T) {
	size := 256 << 20
	if testing.Short() || raceEnabled {
		size = 64 << 20
	}
	dir := t.TempDir()
	write := func(name string, fill func(io.Writer) error) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := fill(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	body := func() io.Reader {
		return io.MultiReader(&patternReader{pattern: samples.Filler(1 << 20), size: int64(size)}, bytes.NewReader(samples.XMRig()))
	}
	files := map[string]string{
		"tar.gz": write("a.tar.gz", func(w io.Writer) error {
			zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			tw := tar.NewWriter(zw)
			tw.WriteHeader(&tar.Header{Name: "xmrig", Mode: 0o755, Size: int64(size + len(samples.XMRig())), Typeflag: tar.TypeReg})
			if _, err := io.Copy(tw, body()); err != nil {
				return err
			}
			tw.Close()
			return zw.Close()
		}),
		"zip": write("a.zip", func(w io.Writer) error {
			zw := zip.NewWriter(w)
			fh := &zip.FileHeader{Name: "xmrig", Method: zip.Store}
			fh.SetMode(0o755)
			fw, err := zw.CreateHeader(fh)
			if err != nil {
				return err
			}
			if _, err := io.Copy(fw, body()); err != nil {
				return err
			}
			return zw.Close()
		}),
	}
	s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxFileBytes: 4 << 30}})
	for kind, p := range files {
		t.Run(kind, func(t *testing.T) {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			var hdr bytes.Buffer
			tw := tar.NewWriter(&hdr)
			tw.WriteHeader(&tar.Header{Name: "opt/big." + kind, Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg})
			tw.Flush()
			layer := io.MultiReader(&hdr, f, bytes.NewReader(make([]byte, (512-fi.Size()%512)%512+1024)))
			var res Result
			elapsed, _, peak := measure(t, func() {
				res, err = s.ScanLayer(context.Background(), layer, Interactive)
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := "/opt/big." + kind + "!xmrig"; !hasFinding(res.Findings, "MinerXMRig", want) {
				t.Errorf("findings %+v, want MinerXMRig at %s", res.Findings, want)
			}
			// As for one huge file (TestHugeFileWindows), plus the first
			// window kept for the unpacker and the decoder's buffers.
			if limit := 2 * uint64(s.slots+4) * uint64(s.limits.Window); peak > limit {
				t.Errorf("heap grew by %d MiB unpacking a %d MiB archive, want at most %d MiB", peak>>20, fi.Size()>>20, limit>>20)
			}
			t.Logf("%d MiB %s in %v, live heap peak +%d MiB", fi.Size()>>20, kind, elapsed, peak>>20)
		})
	}
}

// A zip or compressed stream unpacked to its end is scanned as bytes for
// its head only: its members are what the host runs, and are scanned. One
// not read to its end is scanned whole as bytes as well.
func TestArchiveBytesScannedOnce(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	small := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})
	miner := tfile{name: "xmrig", mode: 0o755, data: samples.XMRig()}
	// The rule checked is one that does not need an ELF header at the
	// start, so it could fire on an archive's own bytes.
	for _, c := range []struct {
		name      string
		data      []byte
		wantRaw   bool
		wantRule  string
		wantInner string
	}{
		{"stored zip", storedZip(t, miner), false, "MinerCommandLine", "/opt/a!xmrig"},
		{"gzip, then a program", append(gzipBytes(t, samples.Filler(8<<10)), samples.XMRig()...), true, "MinerCommandLine", ""},
		{"stored zip of 2 MiB (in a window)", storedZip(t, miner, pad(2<<20)), false, "MinerCommandLine", "/opt/a!xmrig"},
		{"gzip of 2 MiB, then a program", append(gzipBytes(t, samples.Filler(2<<20)), samples.XMRig()...), true, "MinerCommandLine", ""},
		{"stored zip larger than the window", storedZip(t, pad(2*minWindow), miner), false, "MinerCommandLine", "/opt/a!xmrig"},
		{"zip larger than the window with a member of unknown method", unknownMethodZip(t, pad(2*minWindow), miner), true, "MinerCommandLine", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := s
			if strings.Contains(c.name, "larger than the window") {
				s = small
			}
			res, err := scanOne(t, s, tfile{name: "opt/a", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatal(err)
			}
			if got := hasFinding(res.Findings, c.wantRule, "/opt/a"); got != c.wantRaw {
				t.Errorf("%s on the archive's own bytes: %v, want %v (findings %+v)", c.wantRule, got, c.wantRaw, res.Findings)
			}
			if c.wantInner != "" && !hasFinding(res.Findings, c.wantRule, c.wantInner) {
				t.Errorf("findings %+v, want %s at %s", res.Findings, c.wantRule, c.wantInner)
			}
		})
	}
}

// unknownMethodZip stores its last file under compression method 99,
// which no reader opens; the others are stored.
func unknownMethodZip(t testing.TB, files ...tfile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i, f := range files {
		fh := &zip.FileHeader{Name: f.name, Method: zip.Store}
		w, err := zw.CreateHeader(fh)
		if i == len(files)-1 {
			fh = &zip.FileHeader{Name: f.name, Method: 99, CompressedSize64: uint64(len(f.data)), UncompressedSize64: uint64(len(f.data))}
			w, err = zw.CreateRaw(fh)
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
