package scanner

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"

	kflate "github.com/klauspost/compress/flate"
)

// benchJar is a real jar read from the machine (nothing is copied into the
// repository); PULLGATE_BENCH_JAR names another. The benchmark skips it
// when absent.
const benchJar = "/usr/lib/google-cloud-sdk/platform/google_appengine/google/appengine/tools/java/lib/impl/appengine-api.jar"

// klauspostInflaters is the decompressor zip members had before ISA-L,
// kept here as the benchmark's baseline: klauspost's inflater, pooled
// and Reset from member to member.
var klauspostInflaters sync.Pool

type klauspostInflater struct {
	io.ReadCloser
	closed bool
}

func (f *klauspostInflater) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.ReadCloser.Close()
	klauspostInflaters.Put(f)
	return err
}

func newKlauspostInflater(r io.Reader) io.ReadCloser {
	if f, ok := klauspostInflaters.Get().(*klauspostInflater); ok {
		if err := f.ReadCloser.(kflate.Resetter).Reset(r, nil); err == nil {
			f.closed = false
			return f
		}
	}
	return &klauspostInflater{ReadCloser: kflate.NewReader(r)}
}

// syntheticZip is 5,000 members of 1 to 64 KiB, deflated at the default
// level.
func syntheticZip(b *testing.B) []byte {
	var members []zipMember
	for i := 0; i < 5000; i++ {
		n := 1<<10 + (i*7919)%(63<<10)
		members = append(members, zipMember{fmt.Sprintf("s/%d.class", i), memberData(uint64(i), n), -1})
	}
	return buildZip(b, members)
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkZipMembers reads every deflated member of a real jar and of a
// synthetic zip through archive/zip, with klauspost's inflater (the
// baseline) and with ISA-L (newInflater), side by side in one process:
// MB/s of inflated output, and the process's CPU time per member.
//
//	go test -run '^$' -bench ZipMembers -benchtime 3x ./scanner/
func BenchmarkZipMembers(b *testing.B) {
	jar := os.Getenv("PULLGATE_BENCH_JAR")
	if jar == "" {
		jar = benchJar
	}
	sources := []struct {
		name string
		load func(*testing.B) []byte
	}{
		{"jar", func(b *testing.B) []byte {
			data, err := os.ReadFile(jar)
			if err != nil {
				b.Skipf("no jar to read: %v", err)
			}
			return data
		}},
		{"synthetic", syntheticZip},
	}
	decompressors := []struct {
		name string
		d    zip.Decompressor
	}{{"klauspost", newKlauspostInflater}, {"isal", newInflater}}
	for _, src := range sources {
		b.Run(src.name, func(b *testing.B) {
			blob := src.load(b)
			for _, dc := range decompressors {
				b.Run(dc.name, func(b *testing.B) { benchZipMembers(b, blob, dc.d) })
			}
		})
	}
}

func benchZipMembers(b *testing.B, blob []byte, d zip.Decompressor) {
	zr, err := zip.NewReader(bytes.NewReader(blob), int64(len(blob)))
	if err != nil {
		b.Fatal(err)
	}
	zr.RegisterDecompressor(zip.Deflate, d)
	var members []*zip.File
	var out int64
	for _, f := range zr.File {
		if f.Method == zip.Deflate {
			members = append(members, f)
			out += int64(f.UncompressedSize64)
		}
	}
	b.SetBytes(out)
	buf := make([]byte, 64<<10)
	cpu0 := cpuTime()
	for b.Loop() {
		for _, f := range members {
			rc, err := f.Open()
			if err != nil {
				b.Fatal(err)
			}
			if err := drain(rc, buf); err != nil {
				b.Fatalf("%s: %v", f.Name, err)
			}
			rc.Close()
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu)/float64(b.N*len(members)), "cpu-ns/member")
	b.ReportMetric(float64(len(members)), "members")
}

// drain reads r to its end into buf, as the scanner reads a member into
// its window (io.Discard would read in its own 8 KiB pieces).
func drain(r io.Reader, buf []byte) error {
	for {
		_, err := r.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
