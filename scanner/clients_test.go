package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ctdarchive "github.com/containerd/containerd/archive"
	ctdcompression "github.com/containerd/containerd/archive/compression"
	mobyarchive "github.com/moby/go-archive"

	"github.com/pullgate/pullgate/internal/samples"
)

// The tests in this file build layers byte for byte the way an attacker
// pushed them, unpack each with the code Docker Engine (moby's
// archive.ApplyLayer: DecompressStream then UnpackLayer) and containerd
// (compression.DecompressStream then archive.Apply) run on a pull, and
// check that the scanner refuses the layer and scanned every file the
// client wrote, under the path it has on disk and executable when it is.

// scanned records, through the worker hook, every path a scan handed to
// YARA and whether it was scanned as executable.
type scanned struct {
	mu    sync.Mutex
	paths map[string]bool
}

func recordScans(s *Scanner) *scanned {
	rec := &scanned{paths: map[string]bool{}}
	s.testHookJob = func(j *job) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, it := range j.items {
			rec.paths[it.path] = rec.paths[it.path] || it.exec
		}
	}
	return rec
}

func (r *scanned) get(path string) (exec, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	exec, ok = r.paths[path]
	return exec, ok
}

// diskFiles lists the regular files under dir by their path in the image
// ("/usr/bin/x") with their mode.
func diskFiles(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files["/"+filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A client unpacks a layer into a directory and says what it wrote.
type client struct {
	name   string
	unpack func(dir string, blob []byte) error
}

var clients = []client{
	{"moby ApplyLayer", func(dir string, blob []byte) error {
		_, err := mobyarchive.ApplyLayer(dir, bytes.NewReader(blob))
		return err
	}},
	{"containerd Apply", func(dir string, blob []byte) error {
		rc, err := ctdcompression.DecompressStream(bytes.NewReader(blob))
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = ctdarchive.Apply(context.Background(), dir, rc)
		return err
	}},
}

// checkClients unpacks blob with each client and checks that every file
// any of them wrote (even before failing) was scanned under its path, as
// executable when it has an exec bit. It returns, per client, the files
// written.
func checkClients(t *testing.T, blob []byte, rec *scanned) map[string]map[string]fs.FileMode {
	t.Helper()
	out := map[string]map[string]fs.FileMode{}
	for _, c := range clients {
		dir := t.TempDir()
		err := c.unpack(dir, blob)
		files := diskFiles(t, dir)
		t.Logf("%s: wrote %v (err %v)", c.name, files, err)
		for p, mode := range files {
			exec, ok := rec.get(p)
			if !ok {
				t.Errorf("%s wrote %s, which was not scanned under that path", c.name, p)
				continue
			}
			if mode&0o111 != 0 && !exec {
				t.Errorf("%s wrote %s with mode %v, scanned as not executable", c.name, p, mode)
			}
		}
		out[c.name] = files
	}
	return out
}

// v7Tar builds an old-style (pre-POSIX) tar of one file by hand: no ustar
// magic, and a checksum that is the signed sum of the header bytes, which
// archive/tar accepts as clients do.
func v7Tar(name string, mode int64, data []byte) []byte {
	var hdr [512]byte
	copy(hdr[0:100], name)
	copy(hdr[100:108], fmt.Sprintf("%07o\x00", mode))
	copy(hdr[108:116], "0000000\x00")
	copy(hdr[116:124], "0000000\x00")
	copy(hdr[124:136], fmt.Sprintf("%011o\x00", len(data)))
	copy(hdr[136:148], "00000000000\x00")
	hdr[156] = '0'
	var signed, unsigned int64
	for i, c := range hdr {
		if i >= 148 && i < 156 {
			c = ' '
		}
		signed += int64(int8(c))
		unsigned += int64(c)
	}
	if signed == unsigned {
		panic("v7Tar: the name must have a non-ASCII byte so the two sums differ")
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", signed))
	out := append(hdr[:], data...)
	out = append(out, make([]byte, (512-len(data)%512)%512)...)
	return append(out, make([]byte, 1024)...)
}

// cli compresses data with a command-line tool (bzip2, xz), as an
// attacker's build would.
func cli(t testing.TB, data []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out.Bytes()
}

func TestCraftedLayersAsClientsUnpackThem(t *testing.T) {
	xmrig := samples.XMRig()
	minerTar := tarLayer(t, tfile{name: "usr/bin/kworker", mode: 0o755, data: xmrig})
	big := tarLayer(t, tfile{name: "usr/share/filler", mode: 0o644, data: samples.Filler(1536 << 10)}, tfile{name: "usr/bin/kworker", mode: 0o755, data: xmrig})
	cases := []struct {
		name     string
		blob     []byte
		wantPath string // where the miner is found, as the host sees it
		written  bool   // moby writes the miner there (the attack works)
	}{
		{"v7 tar, signed checksum, non-ASCII name", v7Tar("usr/bin/kw\xf6rker", 0o755, xmrig), "/usr/bin/kw\xf6rker", true},
		{"tar.bz2 from the bzip2 tool", cli(t, minerTar, "bzip2", "-c"), "/usr/bin/kworker", true},
		{"tar.bz2, two concatenated streams", append(cli(t, minerTar[:1024], "bzip2", "-c"), cli(t, minerTar[1024:], "bzip2", "-c")...), "/usr/bin/kworker", true},
		{"tar.xz from the xz tool", cli(t, minerTar, "xz", "-c", "-1"), "/usr/bin/kworker", true},
		{"tar.xz, several blocks (xz -T2)", cli(t, big, "xz", "-c", "-1", "-T2", "--block-size=512KiB"), "/usr/bin/kworker", true},
		{"tar.xz, two streams", append(cli(t, big[:1<<20], "xz", "-c", "-1"), cli(t, big[1<<20:], "xz", "-c", "-1")...), "/usr/bin/kworker", true},
		{"zstd after a skippable frame", append(zstdSkippable([]byte("metadata")), zstdBytes(t, minerTar)...), "/usr/bin/kworker", true},
		{
			"whiteout file in the AUFS link dir, hard-linked into /usr/bin",
			tarLayer(t,
				tfile{name: ".wh..wh.plnk/.wh.xmrig", mode: 0o755, data: xmrig},
				tfile{name: "usr/bin/kworker", typeflag: tar.TypeLink, link: ".wh..wh.plnk/.wh.xmrig"},
			),
			"/usr/bin/kworker", true,
		},
		{
			"miner in a whiteout-named file",
			tarLayer(t, tfile{name: "usr/bin/.wh.kworker", mode: 0o755, data: xmrig}),
			"/usr/bin/.wh.kworker", false,
		},
		{
			"hard link to a miner under a harmless name",
			tarLayer(t,
				tfile{name: "usr/share/doc/x/README", mode: 0o644, data: xmrig},
				tfile{name: "usr/bin/kworker", mode: 0o755, typeflag: tar.TypeLink, link: "usr/share/doc/x/README"},
			),
			"/usr/bin/kworker", true,
		},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := recordScans(s)
			res, err := s.ScanLayer(context.Background(), bytes.NewReader(c.blob), Interactive)
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Blocking(), "MinerXMRig", c.wantPath) {
				t.Errorf("not refused with MinerXMRig at %s: %+v", c.wantPath, res.Findings)
			}
			written := checkClients(t, c.blob, rec)
			if mode, ok := written["moby ApplyLayer"][c.wantPath]; ok != c.written || ok && mode&0o111 == 0 {
				t.Errorf("moby wrote %s: %v (mode %v), want %v and executable", c.wantPath, ok, mode, c.written)
			}
		})
	}
}

// zstdSkippable is a zstd skippable frame carrying data.
func zstdSkippable(data []byte) []byte {
	b := []byte{0x50, 0x2a, 0x4d, 0x18, byte(len(data)), byte(len(data) >> 8), byte(len(data) >> 16), byte(len(data) >> 24)}
	return append(b, data...)
}

// Every tar entry with a body is scanned, whatever its type flag: a client
// may write any of them out.
func TestEveryEntryWithABodyIsScanned(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	xmrig := samples.XMRig()
	for _, typeflag := range []byte{tar.TypeReg, '\x00' /* TypeRegA */, tar.TypeCont, 'Z', 'A', tar.TypeGNUSparse} {
		t.Run(fmt.Sprintf("typeflag %q", typeflag), func(t *testing.T) {
			blob := rawTypeTar(t, "opt/bin/x", typeflag, xmrig)
			rec := recordScans(s)
			res, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Blocking(), "MinerXMRig", "/opt/bin/x") {
				t.Errorf("not refused: %+v", res.Findings)
			}
			checkClients(t, blob, rec)
		})
	}
}

// rawTypeTar writes a ustar entry of any type flag with a body, which
// tar.Writer would refuse for some flags.
func rawTypeTar(t *testing.T, name string, typeflag byte, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	b[156] = typeflag
	if typeflag == tar.TypeGNUSparse {
		// An old GNU sparse header: GNU magic, one data region covering
		// the whole file, real size as the size.
		copy(b[257:265], "ustar  \x00")
		copy(b[386:398], fmt.Sprintf("%011o\x00", 0))
		copy(b[398:410], fmt.Sprintf("%011o\x00", len(data)))
		copy(b[483:495], fmt.Sprintf("%011o\x00", len(data)))
	}
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// The content of every moby and containerd test above is in the layer
// itself; a hard link into an earlier layer is refused (see scanLink).
func TestHardLinkTargets(t *testing.T) {
	kinsing := samples.ELF("ordinary")
	over := samples.Filler(linkStoreBytes + 1)
	cases := []struct {
		name     string
		files    []tfile
		wantErr  bool
		wantRule string
		wantPath string
	}{
		{
			name: "link renames an executable to a known miner's name",
			files: []tfile{
				{name: "opt/data.bin", mode: 0o644, data: kinsing},
				{name: "tmp/kdevtmpfsi", typeflag: tar.TypeLink, link: "./opt/data.bin"},
			},
			wantRule: "KinsingBinary", wantPath: "/tmp/kdevtmpfsi",
		},
		{
			name: "link to a link",
			files: []tfile{
				{name: "opt/a", mode: 0o755, data: samples.XMRig()},
				{name: "opt/b", typeflag: tar.TypeLink, link: "opt/a"},
				{name: "usr/bin/kworker", typeflag: tar.TypeLink, link: "/opt/b"},
			},
			wantRule: "MinerXMRig", wantPath: "/usr/bin/kworker",
		},
		{
			name: "target larger than the link store: scanned by name",
			files: []tfile{
				{name: "opt/big", mode: 0o755, data: append(bytes.Clone(kinsing), over...)},
				{name: "tmp/kdevtmpfsi", typeflag: tar.TypeLink, link: "opt/big"},
			},
			wantRule: "KinsingBinary", wantPath: "/tmp/kdevtmpfsi",
		},
		{
			name: "target pushed out of the link store: scanned by name",
			files: []tfile{
				{name: "opt/a", mode: 0o755, data: kinsing},
				{name: "opt/filler", mode: 0o644, data: over[:linkStoreBytes]},
				{name: "tmp/kdevtmpfsi", typeflag: tar.TypeLink, link: "opt/a"},
			},
			wantRule: "KinsingBinary", wantPath: "/tmp/kdevtmpfsi",
		},
		{
			name:    "target not in this layer",
			files:   []tfile{{name: "usr/bin/kworker", typeflag: tar.TypeLink, link: "opt/elsewhere"}},
			wantErr: true,
		},
		{
			name: "target is a symlink",
			files: []tfile{
				{name: "opt/s", typeflag: tar.TypeSymlink, link: "a"},
				{name: "usr/bin/kworker", typeflag: tar.TypeLink, link: "opt/s"},
			},
			wantErr: true,
		},
		{
			name: "target only later in the layer",
			files: []tfile{
				{name: "usr/bin/kworker", typeflag: tar.TypeLink, link: "opt/a"},
				{name: "opt/a", mode: 0o755, data: kinsing},
			},
			wantErr: true,
		},
	}
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, c.files...)), Interactive)
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), "hard link") {
					t.Fatalf("err = %v, want a refusal of the hard link", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !hasFinding(res.Blocking(), c.wantRule, c.wantPath) {
				t.Errorf("no %s at %s: %+v", c.wantRule, c.wantPath, res.Findings)
			}
		})
	}
}

// Hard links rescan content; the bytes scanned again count against
// MaxLayerBytes, so a million links to one large file end in ErrLimit.
func TestHardLinkBomb(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2, Limits: Limits{MaxLayerBytes: 64 << 20}})
	files := []tfile{{name: "big", mode: 0o644, data: samples.Filler(8 << 20)}}
	for i := range 20 {
		files = append(files, tfile{name: fmt.Sprintf("l%d", i), typeflag: tar.TypeLink, link: "big"})
	}
	_, err := s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, files...)), Interactive)
	if err == nil || !strings.Contains(err.Error(), "MaxLayerBytes") {
		t.Fatalf("err = %v, want ErrLimit naming MaxLayerBytes", err)
	}
}

// A client gives a hard-linked inode the link's mode, so a link with an
// exec bit makes its target's earlier names executable too: each is
// scanned again as executable.
func TestHardLinkModeReachesEveryName(t *testing.T) {
	script, _ := samples.Benign()
	s := newTestScanner(t, Options{Workers: 2})
	blob := tarLayer(t,
		tfile{name: "opt/notes.txt", mode: 0o644, data: script},
		tfile{name: "opt/copy.txt", mode: 0o644, typeflag: tar.TypeLink, link: "opt/notes.txt"},
		tfile{name: "usr/local/bin/run", mode: 0o755, typeflag: tar.TypeLink, link: "opt/copy.txt"},
	)
	rec := recordScans(s)
	if _, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/opt/notes.txt", "/opt/copy.txt", "/usr/local/bin/run"} {
		if exec, ok := rec.get(p); !ok || !exec {
			t.Errorf("%s: scanned %v, as executable %v; want both", p, ok, exec)
		}
	}
	written := checkClients(t, blob, rec)
	if mode := written["moby ApplyLayer"]["/opt/notes.txt"]; mode&0o111 == 0 {
		t.Errorf("moby left /opt/notes.txt at mode %v; the test no longer shows the link's mode reaching the target", mode)
	}
}
