package scanner

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// bsdtarArchive writes files into an archive of format with bsdtar, and
// checks that bsdtar gives name's content back from it.
func bsdtarArchive(t testing.TB, name string, content []byte, args ...string) []byte {
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
	// A program that holds zisofs's magic as a constant, as libarchive
	// does (outside attack round 22, FB1).
	withMagic := bsdtarArchive(t, "m", slices.Concat([]byte("lib"), zisofsMagic, []byte{1, 2, 3, 4, 5, 6, 7, 8}, miner), "--format", "iso9660")
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
			{"ISO 9660 of a file holding zisofs's magic", withMagic, false},
			// Compressed, it starts with the 32 KiB of zeros archive/tar
			// takes for an empty tar (outside attack round 22, F12).
			{"ISO 9660 of zisofs files, gzipped", gzipBytes(t, zisofs), true},
		} {
			res, err := scanOne(t, s, tfile{name: "opt/x.bin", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("%s, window %d: %v", c.name, s.limits.Window, err)
			}
			refused := slices.ContainsFunc(res.Findings, func(f Finding) bool {
				return f.Rule == ArchiveUnreadableRule && f.Severity == SeverityHigh && f.File == "/opt/x.bin"
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

// lhaStored is an LHA archive (a level 0 header, method -lh0-) of one
// file stored as it is.
func lhaStored(name string, data []byte) []byte {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	body := []byte("-lh0-")
	body = binary.LittleEndian.AppendUint32(body, uint32(len(data)))
	body = binary.LittleEndian.AppendUint32(body, uint32(len(data)))
	body = append(body, 0, 0, 0, 0, 0x20, 0, byte(len(name)))
	body = binary.LittleEndian.AppendUint16(append(body, name...), crc)
	var sum byte
	for _, b := range body {
		sum += b
	}
	return slices.Concat([]byte{byte(len(body)), sum}, body, data, []byte{0})
}

// stub is a program's start of n bytes: an ELF or a PE header, then zeros.
func stub(magic string, n int) []byte {
	return append([]byte(magic), make([]byte, n-len(magic))...)
}

// LHA archives and the self-extractors bsdtar finds behind a program's
// start (7-Zip, RAR, Cabinet, LHA) are refused, each where and as
// libarchive's bidder finds it; a program that only holds one of their
// magic numbers is not (outside attack round 21).
func TestSelfExtractorsAndLHARefused(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	lha := lhaStored("xmrig", miner)
	sevenZip := bsdtarArchive(t, "m", miner, "--format", "7zip")
	rar := append([]byte("Rar!\x1a\x07\x00\xcf\x90\x73"), make([]byte, 64)...)
	cab := append([]byte("MSCF\x00\x00\x00\x00"), make([]byte, 64)...)
	cab[24], cab[25] = 3, 1
	badSum := bytes.Clone(lha)
	badSum[1]++
	cases := []struct {
		name    string
		data    []byte
		refused bool
		bsdtar  bool // bsdtar -xOf gives the miner
	}{
		{"LHA", lha, true, true},
		{"LHA behind a PE stub", slices.Concat(stub("MZ", 1000), lha), true, true},
		{"7-Zip behind an ELF stub", slices.Concat(stub("\x7fELF", sfx7zFrom+100), sevenZip), true, true},
		{"7-Zip behind a PE stub", slices.Concat(stub("MZ", sfx7zFrom), sevenZip), true, true},
		{"RAR behind an ELF stub", slices.Concat(stub("\x7fELF", sfxRarFrom+32), rar), true, false},
		{"Cabinet behind a PE stub", slices.Concat(stub("MZ", 4096), cab), true, false},
		// Past the bidders' bounds, in bytes their last read brought in
		// (outside attack round 22b, F4 and F6).
		{"Cabinet behind a PE stub past 128 KiB", slices.Concat(stub("MZ", 0x30000), cab), true, false},
		{"LHA behind a PE stub past 20 KiB", slices.Concat(stub("MZ", 0x8000), lha), true, true},
		{"gzip's LZH method", append([]byte("\x1f\xa0"), make([]byte, 64)...), true, false},
		{"an LHA header whose checksum fails", badSum, false, false},
		{"an ELF holding 7-Zip's magic", slices.Concat(stub("\x7fELF", sfx7zFrom+100), sevenZip[:6], make([]byte, 64)), false, false},
		{"an ELF holding RAR's magic off its steps", slices.Concat(stub("\x7fELF", sfxRarFrom+33), rar), false, false},
		{"a PE holding RAR's magic before 64 KiB", slices.Concat(stub("MZ", 4096), rar), false, false},
		{"an ELF holding an LHA header", slices.Concat(stub("\x7fELF", 1000), lha), false, false},
	}
	dir := t.TempDir()
	for _, c := range cases {
		if c.bsdtar {
			p := filepath.Join(dir, "archive")
			if err := os.WriteFile(p, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if got, err := exec.Command("bsdtar", "-xOf", p).Output(); err != nil || !bytes.Equal(got, miner) {
				t.Fatalf("%s: bsdtar -xOf gives %d bytes (%v), not the miner", c.name, len(got), err)
			}
		}
		res, err := scanOne(t, s, tfile{name: "opt/x.bin", mode: 0o755, data: c.data})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		refused := slices.ContainsFunc(res.Findings, func(f Finding) bool {
			return f.Rule == ArchiveUnreadableRule && f.Severity == SeverityHigh && f.Path == "/opt/x.bin"
		})
		if refused != c.refused {
			t.Errorf("%s: findings %v, want a high ArchiveUnreadable %v", c.name, res.Findings, c.refused)
		}
	}
}
