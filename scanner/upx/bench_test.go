package upx

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	upxtool "github.com/pullgate/pullgate/internal/upx"
)

// BenchmarkUnpack reports MB/s of packed input restored, in process and by
// "upx -d" (a process per file, as a scanner shelling out would pay) on
// the same files: a harmless Go program for amd64 packed with UPX's
// default (NRV2E) and with LZMA.
func BenchmarkUnpack(b *testing.B) {
	bin, err := upxtool.Binary()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct{ name, flag string }{{"nrv2e", "--nrv2e"}, {"lzma", "--lzma"}} {
		packed := runUPX(b, goProgram(b, "amd64"), "-q", m.flag)
		b.Run("in-process/"+m.name, func(b *testing.B) {
			b.SetBytes(int64(len(packed)))
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

// BenchmarkNotPacked is the cost paid for every ELF that is not packed.
func BenchmarkNotPacked(b *testing.B) {
	exe := goProgram(b, "amd64")
	for b.Loop() {
		if _, err := Unpack(bytes.NewReader(exe), int64(len(exe)), realLimits); err != ErrNotPacked {
			b.Fatal(err)
		}
	}
}
