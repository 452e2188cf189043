package upx

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	upxtool "github.com/pullgate/pullgate/internal/upx"
)

// BenchmarkUnpack reports MB/s of packed input restored, in process and by
// "upx -d" (a process per file, as a scanner shelling out would pay) on
// the same files: a harmless Go program for amd64 packed with UPX's
// default (NRV2E) and with LZMA. On a shared machine the wall-clock MB/s
// varies with the load, so each also reports the CPU time it used per
// file (cpu-ms/op: this process's for in-process, the children's for
// upx -d).
func BenchmarkUnpack(b *testing.B) {
	bin, err := upxtool.Binary()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct{ name, flag string }{{"nrv2e", "--nrv2e"}, {"lzma", "--lzma"}} {
		packed := runUPX(b, goProgram(b, "amd64"), "-q", m.flag)
		b.Run("in-process/"+m.name, func(b *testing.B) {
			b.SetBytes(int64(len(packed)))
			defer reportCPU(b, syscall.RUSAGE_SELF)()
			for b.Loop() {
				if _, err := Unpack(bytes.NewReader(packed), int64(len(packed)), realLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("upx-d/"+m.name, func(b *testing.B) {
			dir := b.TempDir()
			in, out := filepath.Join(dir, "packed"), filepath.Join(dir, "restored")
			if err := os.WriteFile(in, packed, 0o755); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(packed)))
			defer reportCPU(b, syscall.RUSAGE_CHILDREN)()
			for b.Loop() {
				if o, err := exec.Command(bin, "-q", "-d", "-f", "-o", out, in).CombinedOutput(); err != nil {
					b.Fatalf("upx -d: %v: %s", err, o)
				}
				if err := os.Remove(out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU reports the user and system CPU time of who (this process or
// its children) per iteration, from the call to the returned function's.
func reportCPU(b *testing.B, who int) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		b.ReportMetric(float64(cpu()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkNotPacked is the cost paid for every ELF that is not packed.
func BenchmarkNotPacked(b *testing.B) {
	exe := goProgram(b, "amd64")
	for b.Loop() {
		if _, err := Unpack(bytes.NewReader(exe), int64(len(exe)), realLimits); err != ErrNotPacked {
			b.Fatal(err)
		}
	}
}
