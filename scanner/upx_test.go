package scanner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/upx"
)

// realPrograms builds the harmless tool and the stand-in miner once per
// test binary.
var realPrograms = sync.OnceValues(upx.Build)

func programs(t *testing.T) upx.Programs {
	t.Helper()
	p, err := realPrograms()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// minerFor builds the stand-in miner for goarch once per test binary.
var minerBuilds sync.Map // goarch -> func() ([]byte, error)

func minerFor(t *testing.T, goarch string) []byte {
	t.Helper()
	f, _ := minerBuilds.LoadOrStore(goarch, sync.OnceValues(func() ([]byte, error) {
		return upx.BuildGoArch(upx.MinerProgram(), goarch)
	}))
	b, err := f.(func() ([]byte, error))()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pack(t *testing.T, exe []byte, opts ...string) []byte {
	t.Helper()
	b, err := upx.PackWith(exe, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func findingOf(fs []Finding, rule string) (Finding, bool) {
	for _, f := range fs {
		if f.Rule == rule {
			return f, true
		}
	}
	return Finding{}, false
}

// scanExe scans exe alone in a layer at path, executable.
func scanExe(t *testing.T, s *Scanner, path string, exe []byte) []Finding {
	t.Helper()
	res, err := s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, tfile{name: path, mode: 0o755, data: exe})), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	return res.Findings
}

// Executables packed by a real UPX: a harmless Go tool and a stand-in
// miner (a Go program carrying XMRig's strings), each plain, packed, and
// packed with the UPX marks rewritten as miners do. The miner is unpacked
// and refused for its own strings, wallet or not; the tool only warns.
func TestRealUPX(t *testing.T) {
	progs := programs(t)
	toolHidden := upx.HideMarks(progs.ToolPacked)
	if !upx.Recognised(progs.ToolPacked) || upx.Recognised(toolHidden) {
		t.Fatal("upx should recognise its own output, and not the one with its marks rewritten")
	}
	if bytes.Contains(progs.MinerPacked, []byte("donate.v2.xmrig.com")) {
		t.Fatal("packing left the miner's strings readable; this test needs them hidden")
	}
	s := newTestScanner(t, Options{Workers: 2})

	scan := func(t *testing.T, exe []byte, config []byte) ([]Finding, Decision) {
		t.Helper()
		fs := scanExe(t, s, "usr/local/bin/netd", exe)
		cres, err := s.ScanConfig(context.Background(), config, Interactive)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, cres.Findings...)
		return fs, DefaultPolicy().Decide(fs)
	}
	walletCmd := samples.ImageConfig([]string{"/usr/local/bin/netd"}, []string{"--user", samples.Wallet}, nil)
	plainCmd := samples.ImageConfig([]string{"/usr/local/bin/netd"}, []string{"--print"}, nil)
	const (
		kept    = "/usr/local/bin/netd (UPX-packed)"
		altered = "/usr/local/bin/netd (UPX-packed, marks altered)"
	)

	for _, tc := range []struct {
		name     string
		exe      []byte
		config   []byte
		rule     string // a rule that must be among the findings; "" for none at all
		blocked  bool
		absent   string // a rule that must not be among the findings
		blocking string // a rule among the blocking findings
		path     string // the path of the blocking finding, when given
		reason   string // the decision's reason starts with this
	}{
		{name: "tool", exe: progs.Tool, config: plainCmd},
		{name: "tool packed warns", exe: progs.ToolPacked, config: plainCmd, rule: "PackerUPX", absent: UnpackFailedRule},
		{name: "tool packed, marks hidden, warns", exe: toolHidden, config: plainCmd, rule: "PackerUPXAltered", absent: "PackerUPX"},
		{name: "miner blocks by its strings", exe: progs.Miner, config: plainCmd, rule: "MinerXMRig", blocked: true, blocking: "MinerXMRig"},
		{name: "miner packed alone blocks", exe: progs.MinerPacked, config: plainCmd, rule: "PackerUPX", blocked: true, blocking: "MinerXMRig",
			path: kept, reason: "file " + kept + " matched "},
		{name: "miner packed, marks hidden, alone blocks", exe: upx.HideMarks(progs.MinerPacked), config: plainCmd, rule: "PackerUPXAltered", blocked: true, blocking: "MinerXMRig",
			path: altered, reason: "file " + altered + " matched "},
		{name: "miner packed and run with a wallet blocks", exe: progs.MinerPacked, config: walletCmd, rule: "PackerUPX", blocked: true, blocking: "MinerXMRig"},
		{name: "miner packed, marks hidden, run with a wallet blocks", exe: upx.HideMarks(progs.MinerPacked), config: walletCmd, rule: "PackerUPXAltered", blocked: true, blocking: "MinerXMRig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, d := scan(t, tc.exe, tc.config)
			got := rulesOf(fs)
			if tc.rule == "" && len(fs) > 0 {
				t.Fatalf("findings %v, want none", got)
			}
			if tc.rule != "" && !slices.Contains(got, tc.rule) {
				t.Fatalf("findings %v, want %s", got, tc.rule)
			}
			if tc.absent != "" && slices.Contains(got, tc.absent) {
				t.Fatalf("findings %v, want no %s", got, tc.absent)
			}
			if d.Blocked != tc.blocked {
				t.Fatalf("blocked %v, want %v: findings %v, reason %q", d.Blocked, tc.blocked, got, d.Reason)
			}
			if tc.blocking != "" && !slices.Contains(rulesOf(d.Blocking), tc.blocking) {
				t.Fatalf("blocking findings %v, want %s among them", rulesOf(d.Blocking), tc.blocking)
			}
			if tc.path != "" && !hasFinding(d.Blocking, tc.blocking, tc.path) {
				t.Fatalf("blocking findings %v, want %s on %q", d.Blocking, tc.blocking, tc.path)
			}
			if !strings.HasPrefix(d.Reason, tc.reason) {
				t.Fatalf("reason %q, want it to start with %q", d.Reason, tc.reason)
			}
		})
	}
}

// The stand-in miner packed with each of UPX's methods, for each
// architecture it builds for, marks kept and rewritten, alone in a layer,
// is refused, and the finding names the file as UPX-packed.
func TestRealUPXMethods(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	const path = "/usr/sbin/sysupdate"
	for _, goarch := range []string{"amd64", "386", "arm64", "arm", "mips", "mipsle", "ppc64le"} {
		for _, method := range upx.Methods {
			if goarch != "amd64" && method == "--nrv2d" {
				continue // kept to one architecture: the machine is shared
			}
			if slices.Contains([]string{"arm", "mips", "mipsle", "ppc64le"}, goarch) && method != "--nrv2e" && method != "--lzma" {
				continue // the unpacker's own test has every method on each
			}
			t.Run(goarch+method, func(t *testing.T) {
				packed := pack(t, minerFor(t, goarch), method)
				for _, v := range []struct {
					name, exe, label string
				}{
					{"marks kept", string(packed), "UPX-packed"},
					{"marks rewritten", string(upx.HideMarks(packed)), "UPX-packed, marks altered"},
				} {
					fs := scanExe(t, s, path, []byte(v.exe))
					d := DefaultPolicy().Decide(fs)
					if !d.Blocked {
						t.Fatalf("%s: not blocked; findings %v", v.name, fs)
					}
					shown := fmt.Sprintf("%s (%s)", path, v.label)
					if !slices.Contains(d.Blocking, Finding{Rule: "MinerXMRig", Category: CategoryMiner, Severity: SeverityHigh, Description: "XMRig cryptominer (2.x to 6.x)", Path: shown, File: path}) {
						t.Fatalf("%s: blocking findings %v, want MinerXMRig on %q in file %s", v.name, d.Blocking, shown, path)
					}
					if want := "file " + shown + " matched "; !strings.HasPrefix(d.Reason, want) {
						t.Fatalf("%s: reason %q, want it to start with %q", v.name, d.Reason, want)
					}
					if slices.Contains(rulesOf(fs), UnpackFailedRule) {
						t.Fatalf("%s: findings %v, want no %s", v.name, fs, UnpackFailedRule)
					}
				}
			})
		}
	}
}

// A file with UPX's layout that cannot be unpacked is a medium finding of
// its own, with the reason; alone it warns, like the packer it is.
func TestUnpackFailed(t *testing.T) {
	packed := programs(t).MinerPacked
	s := newTestScanner(t, Options{Workers: 2})

	le := binary.LittleEndian
	// The first b_info follows the program headers, l_info and p_info.
	bInfo := 64 + int(le.Uint16(packed[0x38:]))*56 + 12 + 12
	unknownMethod := bytes.Clone(packed)
	unknownMethod[bInfo+8] = 99
	tampered := bytes.Clone(packed)
	for i := len(packed) / 3; i < len(packed)/3+64; i++ {
		tampered[i] ^= 0x5a
	}

	for _, tc := range []struct {
		name, reason string
		exe          []byte
		restored     bool // the program was restored and its miner found
	}{
		// Cut in the blocks the loader never reads: the program is
		// restored and scanned all the same, and the damage reported.
		{"truncated after the program", "run past the end", packed[:len(packed)*2/3], true},
		{"truncated in the program", "run past the end", packed[:len(packed)/4], false},
		{"unknown method", "unknown method 99", unknownMethod, false},
		{"tampered block", "restore the PT_LOAD", tampered, false},
		{"truncated, marks rewritten", "run past the end", upx.HideMarks(packed)[:len(packed)/2], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := scanExe(t, s, "usr/bin/agent", tc.exe)
			f, ok := findingOf(fs, UnpackFailedRule)
			if !ok {
				t.Fatalf("findings %v, want %s", fs, UnpackFailedRule)
			}
			if f.Severity != SeverityMedium || f.Category != CategoryPacker || f.Path != "/usr/bin/agent" {
				t.Fatalf("finding %+v, want a medium packer finding on /usr/bin/agent", f)
			}
			if !strings.Contains(f.Description, tc.reason) {
				t.Fatalf("description %q does not give the reason %q", f.Description, tc.reason)
			}
			d := DefaultPolicy().Decide(fs)
			if tc.restored {
				if !hasFinding(d.Blocking, "MinerXMRig", "/usr/bin/agent (UPX-packed)") && !hasFinding(d.Blocking, "MinerXMRig", "/usr/bin/agent (UPX-packed, marks altered)") {
					t.Fatalf("blocking findings %v, want MinerXMRig in the restored program", d.Blocking)
				}
			} else if d.Blocked {
				t.Fatalf("blocked by %v, want a warning alone", d.Blocking)
			}
		})
	}
}

// A packed file larger than the scan window is kept whole as it streams
// and unpacked at its end; one whose restored size does not fit the
// limits ends the scan with ErrLimit; an artifact that is a packed
// executable is unpacked too.
func TestUnpackLargeAndLimits(t *testing.T) {
	packed := programs(t).MinerPacked
	if len(packed) <= minWindow {
		t.Fatalf("the packed miner (%d bytes) fits in the smallest window; this test needs it larger", len(packed))
	}
	padded := append(bytes.Clone(packed), samples.Filler(3*minWindow)...)
	const path = "/opt/x"

	t.Run("padded past the default window", func(t *testing.T) {
		// The packed program lies in the first window; what follows it
		// is never read by the loader.
		s := newTestScanner(t, Options{Workers: 2})
		exe := append(bytes.Clone(packed), samples.Filler(int(DefaultLimits().Window))...)
		fs := scanExe(t, s, path, exe)
		if !hasFinding(fs, "MinerXMRig", path+" (UPX-packed)") {
			t.Fatalf("findings %v, want MinerXMRig in the unpacked program", fs)
		}
	})
	t.Run("larger than the window", func(t *testing.T) {
		s := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})
		for _, exe := range [][]byte{packed, padded} {
			fs := scanExe(t, s, path, exe)
			if !hasFinding(fs, "MinerXMRig", path+" (UPX-packed)") {
				t.Fatalf("%d-byte file in %d-byte windows: findings %v, want MinerXMRig in the unpacked program", len(exe), minWindow, fs)
			}
		}
	})
	t.Run("artifact", func(t *testing.T) {
		for _, window := range []int64{0, minWindow} {
			s := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: window}})
			res, err := s.ScanArtifact(context.Background(), bytes.NewReader(packed), Interactive)
			if err != nil {
				t.Fatal(err)
			}
			if !hasFinding(res.Blocking(), "MinerXMRig", "/ (UPX-packed)") {
				t.Fatalf("window %d: findings %v, want MinerXMRig blocking in the unpacked program", window, res.Findings)
			}
		}
	})
	unpackedSize := int64(len(programs(t).Miner))
	for _, tc := range []struct {
		name   string
		limits Limits
	}{
		{"MaxFileBytes", Limits{MaxFileBytes: unpackedSize - 1}},
		{"MaxLayerBytes", Limits{MaxLayerBytes: int64(len(packed)) + unpackedSize/2}},
		{"MaxFileBytes, file larger than the window", Limits{MaxFileBytes: unpackedSize - 1, Window: minWindow}},
		{"MaxLayerBytes, file larger than the window", Limits{MaxLayerBytes: int64(len(packed)) + unpackedSize/2, Window: minWindow}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestScanner(t, Options{Workers: 2, Limits: tc.limits})
			_, err := s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, tfile{name: path, mode: 0o755, data: packed})), Interactive)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "unpacks") {
				t.Fatalf("got %v, want ErrLimit for the unpacked size", err)
			}
		})
	}
}

// A root filesystem on disk (pullgate scan on a directory) goes through
// the same walk: a packed miner in it is unpacked and refused.
func TestUnpackDirLayer(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "usr", "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr", "sbin", "sysupdate"), upx.HideMarks(programs(t).MinerPacked), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newTestScanner(t, Options{Workers: 2})
	layer := DirLayer(dir, false)
	defer layer.Close()
	res, err := s.ScanLayer(context.Background(), layer, Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if !hasFinding(res.Blocking(), "MinerXMRig", "/usr/sbin/sysupdate (UPX-packed, marks altered)") {
		t.Fatalf("findings %v, want MinerXMRig blocking in the unpacked program", res.Findings)
	}
}
