package scanner

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// realFiles picks regular files from dirs (not recursing), at most
// maxFile bytes each and budget bytes in all, spread over every dir. A
// dir that cannot be read fails the test: every one named is on every
// machine `make deps` prepares, and a skipped one would shrink the test
// without a word.
func realFiles(t *testing.T, budget, maxFile int64, dirs ...string) []string {
	var perDir [][]string
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatalf("read %s: %v", d, err)
		}
		var files []string
		for _, e := range entries {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(d, e.Name()))
			}
		}
		slices.Sort(files)
		perDir = append(perDir, files)
	}
	var picked []string
	var total int64
	for i := 0; total < budget; i++ {
		progress := false
		for _, files := range perDir {
			if i >= len(files) {
				continue
			}
			progress = true
			fi, err := os.Stat(files[i])
			if err != nil || fi.Size() > maxFile || total+fi.Size() > budget {
				continue
			}
			picked = append(picked, files[i])
			total += fi.Size()
		}
		if !progress {
			break
		}
	}
	return picked
}

// streamTar writes files into a tar as the scanner reads it, keeping their
// modes, so executables are seen as executables.
func streamTar(t *testing.T, files []string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := func() error {
			for _, name := range files {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				fi, err := f.Stat()
				if err == nil {
					err = tw.WriteHeader(&tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), Typeflag: tar.TypeReg})
				}
				if err == nil {
					_, err = io.Copy(tw, f)
				}
				f.Close()
				if err != nil {
					return err
				}
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { pr.Close() })
	return pr
}

// realDirs are the folders of ordinary files on every machine the tests
// run on: the Go toolchain that runs them (wherever it is installed) and
// Debian's own binaries, libraries and configuration.
func realDirs(t *testing.T) []string {
	out, err := exec.Command("go", "env", "GOROOT", "GOOS", "GOARCH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	env := strings.Fields(string(out))
	if len(env) != 3 {
		t.Fatalf("go env GOROOT GOOS GOARCH printed %q", out)
	}
	goroot, goos, goarch := env[0], env[1], env[2]
	multiarch := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[goarch]
	if multiarch == "" {
		t.Fatalf("no Debian multiarch folder known for %s", goarch)
	}
	return []string{
		filepath.Join(goroot, "bin"),
		filepath.Join(goroot, "pkg", "tool", goos+"_"+goarch),
		"/usr/bin", "/usr/sbin", filepath.Join("/usr/lib", multiarch), "/etc", "/usr/share/doc/bash",
	}
}

// Ordinary Debian binaries and libraries, and Go's toolchain, must not be
// refused.
func TestRealFilesAreNotBlocked(t *testing.T) {
	budget := int64(400 << 20)
	if testing.Short() {
		budget = 64 << 20
	}
	files := realFiles(t, budget, 64<<20, realDirs(t)...)
	if len(files) < 100 {
		t.Fatalf("only %d real files found to scan", len(files))
	}
	s := newTestScanner(t, Options{})
	res, err := s.ScanLayer(context.Background(), streamTar(t, files), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files < int64(len(files)) {
		// More with what the files hold: streams programs carry.
		t.Errorf("scanned %d files, want at least %d", res.Files, len(files))
	}
	for _, f := range res.Blocking() {
		t.Errorf("ordinary file blocked: %+v", f)
	}
	for _, f := range res.Findings {
		if f.Severity != SeverityHigh {
			t.Logf("non-blocking finding: %+v", f)
		}
	}
	t.Logf("%d files, %d MiB in %v (%.0f MB/s)", res.Files, res.Bytes>>20, res.Duration, float64(res.Bytes)/res.Duration.Seconds()/1e6)
}
