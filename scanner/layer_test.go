package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

func TestScanLayerFamilies(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 4})
	upx := samples.ELF("ordinary")
	copy(upx[200:], "UPX!")

	cases := []struct {
		name      string
		files     []tfile
		wantRule  string // "" for a clean layer
		wantPath  string
		wantBlock bool
	}{
		{
			name:     "xmrig renamed to a kernel thread",
			files:    []tfile{{name: "usr/bin/kworker", mode: 0o755, data: samples.ELF("XMRig/%s libuv/%s", "donate.v2.xmrig.com", "cryptonight")}},
			wantRule: "MinerXMRig", wantPath: "/usr/bin/kworker", wantBlock: true,
		},
		{
			name:     "xmrig build without user agent, exec bit unset",
			files:    []tfile{{name: "./opt/app/.cache/dbus", mode: 0o644, data: samples.ELF(donateLevel, "randomx")}},
			wantRule: "MinerXMRig", wantPath: "/opt/app/.cache/dbus", wantBlock: true,
		},
		{
			name:     "xmrig strings only",
			files:    []tfile{{name: "bin/x", mode: 0o700, data: samples.ELF("xmrig", "RandomX", "cryptonight/r", stratumTCP)}},
			wantRule: "MinerXMRig", wantPath: "/bin/x", wantBlock: true,
		},
		{
			name:     "stratum pool URL built into an ELF",
			files:    []tfile{{name: "usr/local/bin/worker", mode: 0o755, data: samples.ELF(stratumTCP + "eu.pool.example.org:3333")}},
			wantRule: "MinerStratumExecutable", wantPath: "/usr/local/bin/worker", wantBlock: true,
		},
		{
			name:     "stratum protocol miner",
			files:    []tfile{{name: "usr/sbin/netd", mode: 0o755, data: samples.ELF("mining.subscribe", "mining.authorize", "cryptonight")}},
			wantRule: "MinerProtocolExecutable", wantPath: "/usr/sbin/netd", wantBlock: true,
		},
		{
			name:     "dropper script, stratum URL",
			files:    []tfile{reg("tmp/run.sh", 0o755, dropperScript)},
			wantRule: "MinerStratumScript", wantPath: "/tmp/run.sh", wantBlock: true,
		},
		{
			name:     "dropper script, command line",
			files:    []tfile{reg("tmp/run.sh", 0o644, dropperScript)},
			wantRule: "MinerCommandLine", wantPath: "/tmp/run.sh", wantBlock: true,
		},
		{
			name:     "dropper script, download and run",
			files:    []tfile{reg("docker-entrypoint.sh", 0o755, dropperScript)},
			wantRule: "DropperMinerScript", wantPath: "/docker-entrypoint.sh", wantBlock: true,
		},
		{
			name:     "miner command line in a crontab, no stratum scheme",
			files:    []tfile{reg("etc/cron.d/sysupdate", 0o644, cronMinerLine)},
			wantRule: "MinerCommandLine", wantPath: "/etc/cron.d/sysupdate", wantBlock: true,
		},
		{
			name:     "stratum+ssl in a systemd unit",
			files:    []tfile{reg("etc/systemd/system/update.service", 0o644, "[Service]\nExecStart=/usr/bin/update -a rx/0 --url stratum+ssl://pool.example.net:443\n")},
			wantRule: "MinerStratumScript", wantPath: "/etc/systemd/system/update.service", wantBlock: true,
		},
		{
			name:     "xmrig config.json",
			files:    []tfile{reg("root/.config/config.json", 0o644, xmrigConfig)},
			wantRule: "MinerXMRigConfig", wantPath: "/root/.config/config.json", wantBlock: true,
		},
		{
			name:     "kinsing miner by name, exec bit",
			files:    []tfile{{name: "tmp/kdevtmpfsi", mode: 0o755, data: samples.Filler(3000)}},
			wantRule: "KinsingBinary", wantPath: "/tmp/kdevtmpfsi", wantBlock: true,
		},
		{
			name:     "kinsing loader by name, ELF magic",
			files:    []tfile{{name: "var/tmp/kinsing", mode: 0o600, data: samples.ELF("main.main")}},
			wantRule: "KinsingBinary", wantPath: "/var/tmp/kinsing", wantBlock: true,
		},
		{
			name:     "kinsing dropper script",
			files:    []tfile{reg("usr/local/bin/start.sh", 0o755, kinsingDropper)},
			wantRule: "KinsingDropper", wantPath: "/usr/local/bin/start.sh", wantBlock: true,
		},
		{
			name:     "pool host name alone does not block",
			files:    []tfile{reg("etc/blocklist.txt", 0o644, "# egress deny list\npool.supportxmr.com\nxmr-eu1.nanopool.org\n")},
			wantRule: "MiningPoolDomain", wantPath: "/etc/blocklist.txt",
		},
		{
			name:     "wallet address alone does not block",
			files:    []tfile{reg("app/.env", 0o644, "PORT=8080\nWALLET="+testWallet+"\n")},
			wantRule: "MoneroWalletAddress", wantPath: "/app/.env",
		},
		{
			name:     "stratum URL in documentation does not block",
			files:    []tfile{reg("usr/share/doc/pool/README.md", 0o644, "Point miners at "+stratumTCP+"pool.example.net:3333\n")},
			wantRule: "MinerStratumURL", wantPath: "/usr/share/doc/pool/README.md",
		},
		{
			name:     "miner name alone does not block",
			files:    []tfile{reg("usr/local/bin/xmrig-proxy", 0o755, "#!/bin/sh\necho not really\n")},
			wantRule: "MinerNameExecutable", wantPath: "/usr/local/bin/xmrig-proxy",
		},
		{
			name:     "UPX packed ELF does not block",
			files:    []tfile{{name: "usr/bin/tool", mode: 0o755, data: upx}},
			wantRule: "PackerUPX", wantPath: "/usr/bin/tool",
		},
		{
			name: "clean layer",
			files: []tfile{
				{name: "bin/", typeflag: '5', mode: 0o755},
				{name: "bin/busybox", mode: 0o755, data: samples.ELF("BusyBox v1.36.1", "Usage: %s [OPTIONS]", "-o FILE", "/proc/self/exe")},
				{name: "bin/sh", typeflag: '2', link: "busybox"},
				{name: "bin/ls", typeflag: '1', link: "bin/busybox"},
				reg("etc/os-release", 0o644, "NAME=\"Alpine Linux\"\nID=alpine\n"),
				reg("usr/local/bin/docker-entrypoint.sh", 0o755, "#!/bin/sh\nset -e\ncurl -fsSL https://example.com/cfg -o /etc/app.conf\nchmod 0644 /etc/app.conf\nexec \"$@\"\n"),
				reg("app/config.json", 0o644, `{"pools": [{"url": "postgres://db:5432", "user": "app"}], "log": "info"}`),
				reg("etc/.wh.removed", 0o644, ""),
				reg("usr/lib/empty", 0o644, ""),
			},
		},
	}
	for _, c := range cases {
		for _, comp := range compressions {
			t.Run(c.name+"/"+comp.name, func(t *testing.T) {
				blob := comp.fn(t, tarLayer(t, c.files...))
				res, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
				if err != nil {
					t.Fatalf("ScanLayer: %v", err)
				}
				if c.wantRule == "" && len(res.Findings) > 0 {
					t.Errorf("clean layer has findings: %+v", res.Findings)
				}
				if c.wantRule != "" && !hasFinding(res.Findings, c.wantRule, c.wantPath) {
					t.Errorf("want %s at %s, got %+v", c.wantRule, c.wantPath, res.Findings)
				}
				if got := len(res.Blocking()) > 0; got != c.wantBlock {
					t.Errorf("blocking = %v, want %v; findings %+v", got, c.wantBlock, res.Findings)
				}
				if res.Files == 0 || res.Duration <= 0 {
					t.Errorf("result counters not set: %+v", res)
				}
			})
		}
	}
}

func TestScanLayerCounts(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	layer := tarLayer(t,
		reg("a", 0o644, "hello"),
		reg("b/c", 0o644, strings.Repeat("x", 3<<20)),
		reg("b/.wh.d", 0o644, ""),
		tfile{name: "e", typeflag: tar.TypeSymlink, link: "a"},
		tfile{name: "f", typeflag: tar.TypeLink, link: "a"},
	)
	res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Background)
	if err != nil {
		t.Fatal(err)
	}
	// The whiteout is scanned, the symlink is not (it has no body), the
	// hard link is scanned again under its own name.
	if want := int64(5 + 3<<20 + 5); res.Files != 4 || res.Bytes != want {
		t.Errorf("Files, Bytes = %d, %d; want 4, %d", res.Files, res.Bytes, want)
	}
}

// An artifact blob that is neither compressed nor a tar is scanned as one
// file "/"; the same blob as a layer is refused, as no client could
// unpack it.
func TestScanArtifactRawBlob(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})
	cases := []struct {
		name string
		blob []byte
		want bool
	}{
		{"empty", nil, false},
		{"short text", []byte("hi"), false},
		{"miner ELF", samples.ELF("XMRig/%s"), true},
		{"miner ELF over several windows", append(samples.ELF("x"), append(samples.Filler(3*minWindow), "XMRig/%s"...)...), true},
		{"gzip of a miner ELF", gzipBytes(t, samples.ELF("XMRig/%s")), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.ScanArtifact(context.Background(), bytes.NewReader(c.blob), Interactive)
			if err != nil {
				t.Fatal(err)
			}
			if got := hasFinding(res.Findings, "MinerXMRig", "/"); got != c.want {
				t.Errorf("MinerXMRig at / = %v, want %v: %+v", got, c.want, res.Findings)
			}
			if res.Files != 1 {
				t.Errorf("Files = %d, want 1", res.Files)
			}
			_, err = s.ScanLayer(context.Background(), bytes.NewReader(c.blob), Interactive)
			if len(c.blob) == 0 {
				if err != nil {
					t.Errorf("ScanLayer of an empty blob: %v, want an empty layer", err)
				}
			} else if !errors.Is(err, ErrCorrupt) {
				t.Errorf("ScanLayer: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// readCounter counts what ScanLayer read, to check it reads to EOF.
type readCounter struct {
	r io.Reader
	n int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestScanLayerReadsToEOF(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	layer := tarLayer(t, reg("a", 0o644, "hello"))
	padded := append(append([]byte(nil), layer...), make([]byte, 10240)...) // tar's own block padding
	two := append(gzipBytes(t, layer[:1024]), gzipBytes(t, layer[1024:])...)
	for name, blob := range map[string][]byte{
		"tar":                           layer,
		"tar+padding":                   padded,
		"gzip":                          gzipBytes(t, layer),
		"gzip members":                  two,
		"zstd":                          zstdBytes(t, padded),
		"zstd, skippable frames around": append(append(zstdSkippable(nil), zstdBytes(t, layer)...), zstdSkippable([]byte("end"))...),
		"bzip2 streams":                 append(cli(t, layer[:1024], "bzip2", "-c"), cli(t, layer[1024:], "bzip2", "-c")...),
		"xz":                            cli(t, padded, "xz", "-c", "-1"),
		"xz, stream padding":            append(cli(t, layer, "xz", "-c", "-1"), 0, 0, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			rc := &readCounter{r: bytes.NewReader(blob)}
			if _, err := s.ScanLayer(context.Background(), rc, Interactive); err != nil {
				t.Fatal(err)
			}
			if rc.n != int64(len(blob)) {
				t.Errorf("read %d of %d bytes", rc.n, len(blob))
			}
		})
	}
}

func TestScanLayerCorrupt(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	layer := tarLayer(t, reg("etc/a", 0o644, strings.Repeat("a", 4000)), reg("etc/b", 0o644, "b"))
	gz := gzipBytes(t, layer)
	badHeader := bytes.Clone(layer)
	copy(badHeader[148:156], "0000000\x00") // wrong checksum on a ustar header
	secondBad := bytes.Clone(layer)
	copy(secondBad[512+4096:], "garbage garbage garbage")
	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-6] ^= 0xff
	zs := zstdBytes(t, layer)
	bz := cli(t, layer, "bzip2", "-c")
	xzs := cli(t, layer, "xz", "-c", "-1")

	cases := map[string][]byte{
		"broken first tar header":  badHeader,
		"broken second tar header": secondBad,
		"truncated tar":            layer[:1000],
		"truncated gzip":           gz[:len(gz)/2],
		"gzip checksum mismatch":   badCRC,
		"gzip garbage":             append([]byte{0x1f, 0x8b}, samples.Filler(5000)...),
		"gzip trailing garbage":    append(bytes.Clone(gz), "trailing"...),
		"truncated zstd":           zs[:len(zs)/2],
		"zstd garbage":             append([]byte{0x28, 0xb5, 0x2f, 0xfd}, samples.Filler(5000)...),
		"truncated bzip2":          bz[:len(bz)/2],
		"bzip2 trailing garbage":   append(bytes.Clone(bz), "trailing"...),
		"bzip2 garbage":            append([]byte("BZh9"), samples.Filler(5000)...),
		"truncated xz":             xzs[:len(xzs)/2],
		"xz trailing garbage":      append(bytes.Clone(xzs), "trailing"...),
		"xz garbage":               append([]byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}, samples.Filler(5000)...),
		"not a tar":                samples.Filler(5000),
		"short non-tar":            []byte("hi"),
	}
	for name, blob := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// errReader fails after its data, like a dropped upstream connection.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func TestScanLayerSourceError(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	gz := gzipBytes(t, tarLayer(t, reg("a", 0o644, strings.Repeat("a", 100000))))
	boom := errors.New("connection reset")
	_, err := s.ScanLayer(context.Background(), &errReader{bytes.NewReader(gz[:len(gz)/2]), boom}, Interactive)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Errorf("err = %v, want the reader's error, not ErrCorrupt", err)
	}
}

func TestScanLayerConcurrent(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 4})
	bad := tarLayer(t,
		reg("etc/hosts", 0o644, "127.0.0.1 localhost\n"),
		tfile{name: "usr/bin/kworker", mode: 0o755, data: samples.ELF("XMRig/%s")},
		reg("big", 0o644, strings.Repeat("z", 5<<20)))
	clean := tarLayer(t,
		reg("etc/hosts", 0o644, "127.0.0.1 localhost\n"),
		tfile{name: "usr/bin/ls", mode: 0o755, data: samples.ELF("GNU coreutils")},
		reg("big", 0o644, strings.Repeat("z", 5<<20)))
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infected := i%2 == 0
			blob := clean
			if infected {
				blob = bad
			}
			blob = compressions[i%3].fn(t, blob)
			prio := Priority(i % 2)
			res, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), prio)
			switch {
			case err != nil:
				errs <- fmt.Errorf("scan %d: %w", i, err)
			case infected != hasFinding(res.Blocking(), "MinerXMRig", "/usr/bin/kworker"):
				errs <- fmt.Errorf("scan %d (infected %v): findings %+v", i, infected, res.Findings)
			case res.Files != 3:
				errs <- fmt.Errorf("scan %d: %d files", i, res.Files)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Busy() != 0 || s.QueueDepth() != 0 {
		t.Errorf("after all scans: Busy %d, QueueDepth %d", s.Busy(), s.QueueDepth())
	}
}

func TestScanAfterClose(t *testing.T) {
	s, err := New(Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	_, err = s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, reg("a", 0o644, "a"))), Interactive)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("err = %v, want ErrClosed", err)
	}
	if _, err := s.ScanConfig(context.Background(), []byte(`{}`), Interactive); !errors.Is(err, ErrClosed) {
		t.Errorf("ScanConfig err = %v, want ErrClosed", err)
	}
}
