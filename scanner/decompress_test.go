package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ctdcompression "github.com/containerd/containerd/archive/compression"
	mobycompression "github.com/moby/go-archive/compression"
	"github.com/ulikunitz/xz"

	"github.com/pullgate/pullgate/internal/samples"
)

// mobyDetect and containerdDetect map the clients' own detection to the
// scanner's values.
func mobyDetect(b []byte) compression {
	switch mobycompression.Detect(b) {
	case mobycompression.Bzip2:
		return compressedBzip2
	case mobycompression.Gzip:
		return compressedGzip
	case mobycompression.Xz:
		return compressedXz
	case mobycompression.Zstd:
		return compressedZstd
	}
	return uncompressed
}

func containerdDetect(b []byte) compression {
	switch ctdcompression.DetectCompression(b) {
	case ctdcompression.Gzip:
		return compressedGzip
	case ctdcompression.Zstd:
		return compressedZstd
	}
	return uncompressed
}

// checkDetect checks the scanner's detection against both clients': it
// equals moby's (which knows every format containerd knows), and where
// containerd sees a compression, it is the same.
func checkDetect(t *testing.T, b []byte) {
	t.Helper()
	if len(b) > detectPeek {
		b = b[:detectPeek] // what both clients peek
	}
	got := detectCompression(b)
	if m := mobyDetect(b); got != m {
		t.Errorf("detectCompression(% x) = %v, moby says %v", b, got, m)
	}
	if c := containerdDetect(b); c != uncompressed && got != c {
		t.Errorf("detectCompression(% x) = %v, containerd says %v", b, got, c)
	}
}

var detectSeeds = [][]byte{
	nil,
	{0x1f},
	{0x1f, 0x8b},
	{0x1f, 0x8b, 0x08},
	{0x1f, 0x8b, 0x09, 0, 0, 0, 0, 0, 0, 0},
	[]byte("BZh91AY&SY"),
	[]byte("BZ"),
	{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04},
	{0xfd, 0x37, 0x7a, 0x58, 0x5a},
	{0x28, 0xb5, 0x2f, 0xfd, 0x04},
	{0x50, 0x2a, 0x4d, 0x18, 0x04, 0, 0, 0, 'a', 'b'},
	{0x5f, 0x2a, 0x4d, 0x18, 0x04, 0, 0, 0},
	{0x5f, 0x2a, 0x4d, 0x18, 0x04, 0, 0},
	{0x60, 0x2a, 0x4d, 0x18, 0x04, 0, 0, 0},
	[]byte("usr/bin/kworker\x00"),
}

func TestDetectCompressionAsClients(t *testing.T) {
	for _, b := range detectSeeds {
		checkDetect(t, b)
	}
}

// FuzzDetect checks the scanner's compression detection against moby's
// and containerd's, and its tar detection against archive/tar reading
// the whole stream.
func FuzzDetect(f *testing.F) {
	for _, b := range detectSeeds {
		f.Add(b)
	}
	f.Add(v7Tar("a\xff", 0o644, []byte("hello")))
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDetect(t, b)
		head := b[:min(len(b), 2*blockSize)]
		// What isTar rejects, archive/tar cannot read a first entry from
		// (nor an empty archive, unless the stream is too short to say).
		_, err := tar.NewReader(bytes.NewReader(b)).Next()
		if !isTar(head) && len(b) >= blockSize && (err == nil || err == io.EOF) {
			t.Errorf("archive/tar reads %q (%v) from a stream isTar rejects", head, err)
		}
	})
}

func TestDecoderBombs(t *testing.T) {
	zeros := make([]byte, 8<<20)
	xzStream := func(t testing.TB) []byte { return cli(t, zeros, "xz", "-c", "-1") }
	for _, c := range []struct {
		name   string
		stream func(t testing.TB) []byte // 8 MiB of zeros, compressed; repeated
	}{
		{"gzip", func(t testing.TB) []byte { return gzipBytes(t, zeros) }},
		{"bzip2", func(t testing.TB) []byte { return cli(t, zeros, "bzip2", "-c") }},
		{"xz", xzStream},
		{"zstd", func(t testing.TB) []byte { return zstdBytes(t, zeros) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxLayerBytes: 48 << 20}})
			for _, scan := range []func(context.Context, io.Reader, Prioritizer) (Result, error){s.ScanLayer, s.ScanArtifact} {
				var err error
				_, _, peak := measure(t, func() {
					_, err = scan(context.Background(), &repeatReader{data: c.stream(t), n: 128}, Interactive) // 1 GiB
				})
				if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "MaxLayerBytes") {
					t.Fatalf("err = %v, want ErrLimit naming MaxLayerBytes", err)
				}
				if peak > 96<<20 {
					t.Errorf("live heap grew by %d MiB", peak>>20)
				}
			}
		})
	}
}

// An xz stream that asks for a larger dictionary than xzMaxDict is
// refused before the decoder allocates it.
func TestXzDictionaryLimit(t *testing.T) {
	layer := tarLayer(t, reg("a", 0o644, "hello"))
	encode := func(dict int) []byte {
		var buf bytes.Buffer
		w, err := xz.WriterConfig{DictCap: dict}.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(layer); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	s := newTestScanner(t, Options{Workers: 1})
	if _, err := s.ScanLayer(context.Background(), bytes.NewReader(encode(xzMaxDict)), Interactive); err != nil {
		t.Errorf("dictionary of xzMaxDict: %v", err)
	}
	_, err := s.ScanLayer(context.Background(), bytes.NewReader(encode(2*xzMaxDict)), Interactive)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "dictionary") {
		t.Errorf("dictionary of 2×xzMaxDict: err = %v, want ErrLimit naming the dictionary", err)
	}
}

func TestScanArtifact(t *testing.T) {
	xmrig := samples.XMRig()
	layer := tarLayer(t, tfile{name: "usr/bin/kworker", mode: 0o755, data: xmrig})
	cases := []struct {
		name      string
		blob      []byte
		wantPath  string
		wantFiles int64
		layerErr  bool // ScanLayer refuses the same blob as corrupt
	}{
		{"tar", layer, "/usr/bin/kworker", 1, false},
		{"tar.xz", cli(t, layer, "xz", "-c", "-1"), "/usr/bin/kworker", 1, false},
		{"tar, miner after the end-of-archive blocks", append(tarLayer(t, reg("a", 0o644, "a")), xmrig...), "/", 2, false},
		// Not at offset 0 the ELF is no longer an executable, but its
		// miner command line still blocks.
		{"zeros then a miner (a disk image)", append(make([]byte, 32<<10), xmrig...), "/", 1, false},
		{"one zero block then a miner", append(make([]byte, 512), xmrig...), "/", 1, true},
		{"bzip2 of a miner ELF", cli(t, xmrig, "bzip2", "-c"), "/", 1, true},
		{"miner ELF", xmrig, "/", 1, true},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.ScanArtifact(context.Background(), bytes.NewReader(c.blob), Interactive)
			if err != nil {
				t.Fatal(err)
			}
			if !hasFinding(res.Blocking(), "MinerXMRig", c.wantPath) && !hasFinding(res.Blocking(), "MinerCommandLine", c.wantPath) {
				t.Errorf("not refused for a finding at %s: %+v", c.wantPath, res.Findings)
			}
			if res.Files != c.wantFiles {
				t.Errorf("Files = %d, want %d", res.Files, c.wantFiles)
			}
			_, err = s.ScanLayer(context.Background(), bytes.NewReader(c.blob), Interactive)
			if got := errors.Is(err, ErrCorrupt); got != c.layerErr {
				t.Errorf("ScanLayer: err = %v, want ErrCorrupt: %v", err, c.layerErr)
			}
		})
	}
}

// xzBlockOffsets lists where each block of an xz file starts, as the xz
// tool reports it.
func xzBlockOffsets(t *testing.T, blob []byte) []int {
	t.Helper()
	f := filepath.Join(t.TempDir(), "b.xz")
	if err := os.WriteFile(f, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xz", "--robot", "--list", "-vv", f).Output()
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Split(line, "\t")
		if fields[0] == "block" {
			off, err := strconv.Atoi(fields[4])
			if err != nil {
				t.Fatal(err)
			}
			offs = append(offs, off)
		}
	}
	return offs
}

// setXzDict rewrites the LZMA2 dictionary byte of the block header at off
// and its CRC32, as a crafted stream would.
func setXzDict(t *testing.T, blob []byte, off int, dict byte) {
	t.Helper()
	size := (int(blob[off]) + 1) * 4
	h := blob[off : off+size]
	i := bytes.Index(h, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in block header % x", h)
	}
	h[i+2] = dict
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
}

// The guard follows what the xz tool writes (every check type, several
// blocks, several streams, stream padding) and checks every block's
// dictionary, not only the first.
func TestXzGuard(t *testing.T) {
	layer := tarLayer(t, tfile{name: "usr/share/f", mode: 0o644, data: samples.Filler(1 << 20)}, reg("a", 0o644, "hello"))
	multi := cli(t, layer, "xz", "-c", "-1", "-T2", "--block-size=256KiB")
	offs := xzBlockOffsets(t, multi)
	if len(offs) < 3 {
		t.Fatalf("xz wrote %d blocks, want several", len(offs))
	}
	bigDictLater := bytes.Clone(multi)
	setXzDict(t, bigDictLater, offs[2], 30) // 2<<(15+11) = 128 MiB
	okDictLater := bytes.Clone(multi)
	setXzDict(t, okDictLater, offs[2], 24) // 16 MiB, within the limit

	cases := []struct {
		name string
		blob []byte
		want error // nil, ErrLimit or ErrCorrupt
	}{
		{"no check", cli(t, layer, "xz", "-c", "-1", "--check=none"), nil},
		{"crc32", cli(t, layer, "xz", "-c", "-1", "--check=crc32"), nil},
		{"sha256", cli(t, layer, "xz", "-c", "-1", "--check=sha256"), nil},
		{"several blocks", multi, nil},
		{"several streams and padding", append(append(cli(t, layer[:4096], "xz", "-c", "-1"), 0, 0, 0, 0, 0, 0, 0, 0), cli(t, layer[4096:], "xz", "-c", "-1")...), nil},
		{"a later block's dictionary raised within the limit", okDictLater, nil},
		{"a later block asks for a 128 MiB dictionary", bigDictLater, ErrLimit},
		{"stream header only", multi[:12], ErrCorrupt},
		{"cut after the first block", multi[:offs[1]], ErrCorrupt},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.ScanLayer(context.Background(), bytes.NewReader(c.blob), Interactive)
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("err = %v, want none", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// An artifact that starts with a compression's magic bytes but does not
// decode is refused, as a layer would be: it is not scanned raw.
func TestScanArtifactUndecodable(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	for _, blob := range [][]byte{[]byte("BZh is how this text starts"), append([]byte{0x1f, 0x8b, 0x08}, "text"...), append(bytes.Clone(xzMagic), "text"...)} {
		_, err := s.ScanArtifact(context.Background(), bytes.NewReader(blob), Interactive)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%q: err = %v, want ErrCorrupt", blob, err)
		}
	}
}
