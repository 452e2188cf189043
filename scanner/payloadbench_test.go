package scanner

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// treeFiles reads regular files under root whose names end in one of
// exts (any name when exts is empty), up to limit bytes in all.
func treeFiles(b *testing.B, root string, limit int, exts ...string) []tfile {
	b.Helper()
	var files []tfile
	total := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || total >= limit {
			return nil
		}
		if len(exts) > 0 && !hasSuffix(p, exts) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		files = append(files, tfile{name: strings.TrimPrefix(p, "/"), mode: 0o644, data: data})
		total += len(data)
		return nil
	})
	if total == 0 {
		b.Skipf("no files under %s", root)
	}
	return files
}

func hasSuffix(p string, exts []string) bool {
	for _, e := range exts {
		if strings.HasSuffix(p, e) {
			return true
		}
	}
	return false
}

func joined(files []tfile) []byte {
	var buf bytes.Buffer
	for _, f := range files {
		buf.Write(f.data)
	}
	return buf.Bytes()
}

// The search for base64 over what files hold: a makeself script, a real
// binary (this test's own), Python sources, JavaScript, certificates.
func BenchmarkBase64Payloads(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	binary, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	inputs := []struct {
		name string
		data func() []byte
	}{
		{"makeself", func() []byte {
			return []byte(samples.Makeself(samples.Gzip(samples.Tar(append(samples.XMRigRelease(), samples.File{Path: "pad", Data: samples.Filler(64 << 10)})...))))
		}},
		{"binary", func() []byte { return binary[:min(len(binary), 8<<20)] }},
		{"python", func() []byte { return joined(treeFiles(b, "/usr/lib/python3", 8<<20, ".py")) }},
		{"javascript", func() []byte { return joined(treeFiles(b, "/usr/share/javascript", 8<<20, ".js")) }},
		{"certificates", func() []byte { return joined(treeFiles(b, "/usr/share/ca-certificates", 8<<20, ".crt")) }},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			data := in.data()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				base64Payloads(data)
			}
		})
	}
}

// The scanner over a layer of real files that are no scripts: Python's
// compiled and data files, and documentation, which are now probed for
// base64 too.
func BenchmarkBase64PayloadsLayer(b *testing.B) {
	files := treeFiles(b, "/usr/lib/python3", 24<<20)
	layer := tarLayer(b, files...)
	s := newTestScanner(b, Options{Workers: 2})
	b.SetBytes(int64(len(layer)))
	b.ResetTimer()
	for range b.N {
		if _, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive); err != nil {
			b.Fatal(err)
		}
	}
}
