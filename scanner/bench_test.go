package scanner

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

var (
	benchOnce  sync.Once
	benchTar   []byte
	benchBytes int64
)

// benchLayer is a synthetic layer shaped like a language runtime image:
// thousands of small text files, hundreds of mid-size ones, some ELF-like
// binaries and libraries, and a couple of large ones. About 120 MiB.
func benchLayer(b *testing.B) ([]byte, int64) {
	benchOnce.Do(func() {
		text := []byte(strings.Repeat("#!/bin/sh\n# configuration for the service\nexport PATH=/usr/local/bin:$PATH\nexec \"$@\"\n", 64))
		var files []tfile
		add := func(name string, mode int64, data []byte) {
			files = append(files, tfile{name: name, mode: mode, data: data})
			benchBytes += int64(len(data))
		}
		for i := range 4000 {
			add(fmt.Sprintf("usr/lib/python3/site-packages/pkg%d/mod%d.py", i/50, i), 0o644, text[:512+(i*37)%(len(text)-512)])
		}
		for i := range 300 {
			add(fmt.Sprintf("usr/share/data/blob%d.dat", i), 0o644, samples.Filler(64<<10+i*512))
		}
		for i := range 60 {
			add(fmt.Sprintf("usr/bin/tool%d", i), 0o755, append(samples.ELF("GLIBC_2.34", "Usage: %s [OPTION]...", "--help"), samples.Filler(700<<10+i*4096)...))
		}
		add("usr/lib/libbig.so.1", 0o644, append(samples.ELF("GLIBC_2.34"), samples.Filler(24<<20)...))
		add("usr/local/bin/app", 0o755, append(samples.ELF("runtime.main", "net/http"), samples.Filler(40<<20)...))
		benchTar = tarLayer(b, files...)
	})
	return benchTar, benchBytes
}

func BenchmarkScanLayer(b *testing.B) {
	layer, size := benchLayer(b)
	gz := gzipBytes(b, layer)
	workers := slices.Compact([]int{1, 2, 4, runtime.NumCPU()})
	slices.Sort(workers)
	workers = slices.Compact(workers)
	for _, n := range workers {
		s := newTestScanner(b, Options{Workers: n})
		for _, enc := range []struct {
			name string
			blob []byte
		}{{"tar", layer}, {"gzip", gz}} {
			b.Run(fmt.Sprintf("workers=%d/%s", n, enc.name), func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					res, err := s.ScanLayer(context.Background(), bytes.NewReader(enc.blob), Interactive)
					if err != nil {
						b.Fatal(err)
					}
					if len(res.Findings) > 0 {
						b.Fatalf("synthetic layer has findings: %+v", res.Findings)
					}
				}
			})
		}
	}
}
