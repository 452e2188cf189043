package upx

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	upxtool "github.com/pullgate/pullgate/internal/upx"
)

// realLimits are generous enough for the Go programs the tests pack.
var realLimits = Limits{MaxOutput: 64 << 20}

// programs holds a harmless Go program per GOARCH, built once per test
// binary, static and without symbols so packing stays quick.
var programs sync.Map // GOARCH -> *built

type built struct {
	once sync.Once
	exe  []byte
	err  error
}

func goProgram(t testing.TB, goarch string) []byte {
	t.Helper()
	v, _ := programs.LoadOrStore(goarch, &built{})
	b := v.(*built)
	b.once.Do(func() { b.exe, b.err = buildGo(goarch) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.exe
}

func buildGo(goarch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "pullgate-upx-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src := upxtool.GoProgram("a harmless command-line tool", "usage: tool [--print]")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sample\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "sample")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build for %s: %w: %s", goarch, err, bytes.TrimSpace(b))
	}
	return os.ReadFile(out)
}

// runUPX runs the real UPX with args on a copy of exe and returns the
// copy afterwards.
func runUPX(t testing.TB, exe []byte, args ...string) []byte {
	t.Helper()
	bin, err := upxtool.Binary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, append(args, path)...).CombinedOutput(); err != nil {
		t.Fatalf("upx %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadRanges are the PT_LOAD file ranges of an ELF file.
func loadRanges(t testing.TB, exe []byte) [][2]int64 {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatal(err)
	}
	var rs [][2]int64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			rs = append(rs, [2]int64{int64(p.Off), int64(p.Filesz)})
		}
	}
	return rs
}

var methodFlags = []struct {
	flag   string
	method Method
}{
	{"--nrv2b", MethodNRV2B},
	{"--nrv2d", MethodNRV2D},
	{"--nrv2e", MethodNRV2E},
	{"--lzma", MethodLZMA},
	{"--best", 0}, // UPX picks the best NRV method and filter
}

// wantMethod is the method UPX uses for flag's method on goarch: 32-bit
// ARM has the _8 NRV variants.
func wantMethod(goarch string, m Method) Method {
	if goarch != "arm" {
		return m
	}
	if m8, ok := map[Method]Method{MethodNRV2B: MethodNRV2B8, MethodNRV2D: MethodNRV2D8, MethodNRV2E: MethodNRV2E8}[m]; ok {
		return m8
	}
	return m
}

// UPX 3.94 packs amd64, 386, arm64, arm, mips, mipsle and ppc64le Go
// programs; the restored content must equal what "upx -d" restores over
// every PT_LOAD file range (and, in fact, over the whole file), with the
// marks kept or rewritten.
func TestUnpackMatchesUPX(t *testing.T) {
	for _, goarch := range []string{"amd64", "386", "arm64", "arm", "mips", "mipsle", "ppc64le"} {
		for _, m := range methodFlags {
			t.Run(goarch+m.flag, func(t *testing.T) {
				t.Parallel()
				exe := goProgram(t, goarch)
				packed := runUPX(t, exe, "-q", m.flag)
				reference := runUPX(t, packed, "-q", "-d")
				if !bytes.Equal(reference, exe) {
					t.Logf("upx -d does not restore the build byte for byte (%d of %d bytes); comparing with upx -d", len(reference), len(exe))
				}
				for _, variant := range []struct {
					name    string
					file    []byte
					altered bool
				}{
					{"marks-kept", packed, false},
					{"marks-rewritten", upxtool.HideMarks(packed), true},
					{"marks-replaced", bytes.ReplaceAll(packed, []byte("UPX!"), []byte{0x0c, 0x91, 0x7e, 0x3a}), true},
				} {
					if variant.altered && upxtool.Recognised(variant.file) {
						t.Fatal("upx still recognises the file with its marks rewritten")
					}
					got, err := Unpack(bytes.NewReader(variant.file), int64(len(variant.file)), realLimits)
					if err != nil {
						t.Fatalf("%s: %v", variant.name, err)
					}
					if got.Arch != goarch || got.MarksAltered != variant.altered || !got.Checksummed {
						t.Errorf("%s: arch %s, marks altered %v, checksummed %v; want %s, %v, true", variant.name, got.Arch, got.MarksAltered, got.Checksummed, goarch, variant.altered)
					}
					if d := got.Describe(); !strings.HasPrefix(d, "UPX 3.9x, NRV2") && !strings.HasPrefix(d, "UPX 3.9x, LZMA") || strings.Contains(d, "marks rewritten") != variant.altered {
						t.Errorf("%s: described as %q", variant.name, d)
					}
					if want := wantMethod(goarch, m.method); want != 0 && got.Method != want {
						t.Errorf("%s: method %s, want %s", variant.name, got.Method, want)
					}
					for _, r := range loadRanges(t, reference) {
						if r[0]+r[1] > int64(len(got.File)) || !bytes.Equal(got.File[r[0]:r[0]+r[1]], reference[r[0]:r[0]+r[1]]) {
							t.Fatalf("%s: PT_LOAD at %#x (%d bytes) differs from upx -d", variant.name, r[0], r[1])
						}
					}
					if !bytes.Equal(got.File, reference) {
						t.Errorf("%s: the restored file differs from upx -d outside the PT_LOADs", variant.name)
					}
					if len(got.Segments) != len(loadRanges(t, reference)) {
						t.Errorf("%s: %d segments, want %d", variant.name, len(got.Segments), len(loadRanges(t, reference)))
					}
				}
			})
		}
	}
}

func TestNotPacked(t *testing.T) {
	exe := goProgram(t, "amd64")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"go-program", exe},
		{"empty", nil},
		{"text", []byte("#!/bin/sh\necho hello\n")},
		{"elf-header-only", exe[:64]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unpack(bytes.NewReader(tc.data), int64(len(tc.data)), realLimits)
			if !errors.Is(err, ErrNotPacked) {
				t.Fatalf("got %v, want ErrNotPacked", err)
			}
		})
	}
}

// Miners are mostly C and C++ programs: a harmless C program, static and
// as a dynamically linked PIE, packed by UPX with its defaults, restores
// as "upx -d" restores it.
func TestUnpackCPrograms(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.c")
	if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"static", []string{"-static"}},
		{"pie", []string{"-fPIE", "-pie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exe := filepath.Join(dir, tc.name)
			if out, err := exec.Command("gcc", append(append([]string{"-O2"}, tc.flags...), "-o", exe, src)...).CombinedOutput(); err != nil {
				t.Fatalf("gcc: %v: %s", err, out)
			}
			b, err := os.ReadFile(exe)
			if err != nil {
				t.Fatal(err)
			}
			packed := runUPX(t, b, "-q")
			reference := runUPX(t, packed, "-q", "-d")
			got, err := Unpack(bytes.NewReader(packed), int64(len(packed)), realLimits)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.File, reference) || !got.Checksummed {
				t.Errorf("restored %d bytes (equal to upx -d: %v), checksummed %v", len(got.File), bytes.Equal(got.File, reference), got.Checksummed)
			}
		})
	}
}

// The UPX release installed by make deps is itself a real-world packed
// program (C++, LZMA, packed by UPX's authors): it restores as "upx -d"
// restores it.
func TestUnpackUPXRelease(t *testing.T) {
	bin, err := upxtool.Binary()
	if err != nil {
		t.Fatal(err)
	}
	packed, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	reference := runUPX(t, packed, "-q", "-d")
	got, err := Unpack(bytes.NewReader(packed), int64(len(packed)), realLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.File, reference) || got.Method != MethodLZMA || got.Arch != "amd64" || !got.Checksummed {
		t.Errorf("restored %d bytes (equal to upx -d: %v), %s", len(got.File), bytes.Equal(got.File, reference), got.Describe())
	}
}
