package scanner

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// bsdtarArchive writes files into an archive of format with bsdtar, and
// checks that bsdtar gives name's content back from it.
func bsdtarArchive(t *testing.T, name string, content []byte, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), content, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "archive")
	if b, err := exec.Command("bsdtar", slices.Concat(args, []string{"-C", dir, "-cf", out, name})...).CombinedOutput(); err != nil {
		t.Fatalf("bsdtar %v: %v: %s", args, err, b)
	}
	if got, err := exec.Command("bsdtar", "-xOf", out, name).Output(); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("bsdtar -xOf does not give %s back from the %v archive: %v", name, args, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Archives bsdtar unpacks and pullgate does not read are refused (a high
// ArchiveUnreadable), in a file within one window and in a larger one;
// an ISO 9660 image of uncompressed files is scanned as the bytes it is
// (outside attack round 21, F4 and F5).
func TestForeignArchivesRefused(t *testing.T) {
	// Past one small window; libarchive's zisofs reader fails on the
	// blocks its writer makes of random bytes, so the rest is text.
	miner := append(samples.XMRig(), bytes.Repeat([]byte("a line of the manual\n"), 20<<10)...)
	sevenZip := bsdtarArchive(t, "m", miner, "--format", "7zip")
	zisofs := bsdtarArchive(t, "m", miner, "--format", "iso9660", "--options", "zisofs")
	plainISO := bsdtarArchive(t, "m", miner, "--format", "iso9660")
	filler := samples.Filler(300 << 10) // past a small window
	for _, s := range []*Scanner{
		newTestScanner(t, Options{Workers: 2}),
		newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}}),
	} {
		for _, c := range []struct {
			name    string
			data    []byte
			refused bool
		}{
			{"7-Zip", sevenZip, true},
			{"ISO 9660 of zisofs files", zisofs, true},
			{"RAR", append([]byte("Rar!\x1a\x07\x00"), filler...), true},
			{"RAR 5", append([]byte("Rar!\x1a\x07\x01\x00"), filler...), true},
			{"Cabinet", append([]byte("MSCF\x00\x00\x00\x00"), filler...), true},
			{"ISO 9660 of plain files", plainISO, false},
		} {
			res, err := scanOne(t, s, tfile{name: "opt/x.bin", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("%s, window %d: %v", c.name, s.limits.Window, err)
			}
			refused := slices.ContainsFunc(res.Findings, func(f Finding) bool {
				return f.Rule == ArchiveUnreadableRule && f.Severity == SeverityHigh && f.Path == "/opt/x.bin"
			})
			if refused != c.refused {
				t.Errorf("%s, window %d: findings %v, want a high ArchiveUnreadable %v", c.name, s.limits.Window, res.Findings, c.refused)
			}
			if !c.refused && !hasFinding(res.Findings, "MinerCommandLine", "/opt/x.bin") {
				t.Errorf("%s, window %d: findings %v, want MinerCommandLine in its bytes", c.name, s.limits.Window, res.Findings)
			}
		}
	}
}
