package scanner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// benchZips are real zips of this machine, each scanned as the one file
// of a layer: a jar read in one batch, one in a window, one larger than a
// window (spooled), and a wheel. A missing one is skipped.
var benchZips = []string{
	"/usr/share/java/commons-lang3.jar",
	"/usr/share/java/guava.jar",
	benchJar,
	"/root/.pyenv/versions/3.13.0/lib/python3.13/ensurepip/_bundled/pip-24.2-py3-none-any.whl",
}

// BenchmarkScanZip scans a layer holding one real zip: what reading a zip
// as both kinds of extractor read it costs, the central directory walk
// included.
//
//	go test -run '^$' -bench ScanZip -count 5 ./scanner/
func BenchmarkScanZip(b *testing.B) {
	s := newTestScanner(b, Options{Workers: 2})
	for _, p := range benchZips {
		b.Run(filepath.Base(p), func(b *testing.B) {
			data, err := os.ReadFile(p)
			if err != nil {
				b.Skipf("no zip to read: %v", err)
			}
			layer := tarLayer(b, tfile{name: "opt/app/" + filepath.Base(p), mode: 0o644, data: data})
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Blocking()) > 0 {
					b.Fatalf("%s refused: %+v", p, res.Findings)
				}
			}
		})
	}
}
