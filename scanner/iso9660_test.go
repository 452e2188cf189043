package scanner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// multiExtentISO is an ISO 9660 image, written by bsdtar, of one file
// whose content is the pieces given, each in extents of its own: bsdtar
// writes one file of each, named so that they sort in order, and the
// records of all but the last are marked as going on in the next (ISO
// 9660 level 3), as the image of one file of several extents has them.
func multiExtentISO(t testing.TB, pieces [][]byte) []byte {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--format", "iso9660", "--options", "!rockridge,!joliet,!pad", "-cf", "-", "-C", dir}
	for i, p := range pieces {
		name := fmt.Sprintf("K%07d", i)
		if err := os.WriteFile(filepath.Join(dir, name), p, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, name)
	}
	img, err := exec.Command("bsdtar", args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	pvd := img[16*isoSector:]
	root, ok := parseISORecord(pvd[156:190], false)
	if !ok {
		t.Fatal("bsdtar's image has no root directory record")
	}
	var records []int
	for off := int(root.extent); off < int(root.extent+root.size); {
		if img[off] == 0 {
			off = (off/isoSector + 1) * isoSector
			continue
		}
		if img[off+33] == 'K' {
			records = append(records, off)
		}
		off += int(img[off])
	}
	if len(records) != len(pieces) {
		t.Fatalf("bsdtar's image has %d records of pieces, want %d", len(records), len(pieces))
	}
	for _, off := range records[:len(records)-1] {
		img[off+25] |= 0x80
	}
	return img
}

// An ISO 9660 image's files are walked as bsdtar extracts them: a file
// of several extents is scanned joined, and an archive in the image is
// looked into at its start (outside attack round 22, F9 and F10).
func TestISOImagesWalked(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	var slices [][]byte
	for i := 0; i < len(miner); i += 16 {
		slices = append(slices, miner[i:min(len(miner), i+16)])
	}
	multi := multiExtentISO(t, slices)
	lzma := bsdtarArchive(t, "tool.lzma", cli(t, miner, "xz", "--format=lzma", "-c"), "--format", "iso9660")
	sevenZip := bsdtarArchive(t, "app.7z", bsdtarArchive(t, "m", miner, "--format", "7zip"), "--format", "iso9660")
	dir := t.TempDir()
	p := filepath.Join(dir, "multi.iso")
	if err := os.WriteFile(p, multi, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := exec.Command("bsdtar", "-xOf", p).Output(); err != nil || !bytes.Equal(got, miner) {
		t.Fatalf("bsdtar -xOf gives %d bytes of the image of %d extents (%v), not the miner", len(got), len(slices), err)
	}
	for _, s := range slices {
		if bytes.Contains(multi, miner[:64]) || len(s) > 16 {
			t.Fatal("the image holds more of the miner in one piece than the test means")
		}
	}
	pad := samples.Filler(300 << 10) // past a small window
	for _, sc := range []*Scanner{s, newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})} {
		for _, c := range []struct {
			name, rule, path string
			data             []byte
		}{
			{"a file of 16-byte extents", "MinerXMRig", "/opt/x.iso!K0000000", multi},
			{"a large one", "MinerXMRig", "/opt/x.iso!K0000000", append(bytes.Clone(multi), pad...)},
			{"an .lzma file", "MinerXMRig", "/opt/x.iso!tool.lzma!tool", lzma},
			{"a 7-Zip archive", ArchiveUnreadableRule, "/opt/x.iso!app.7z", sevenZip},
		} {
			res, err := scanOne(t, sc, tfile{name: "opt/x.iso", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("%s, window %d: %v", c.name, sc.limits.Window, err)
			}
			if !hasFinding(res.Findings, c.rule, c.path) {
				t.Errorf("%s, window %d: findings %v, want %s on %s", c.name, sc.limits.Window, res.Findings, c.rule, c.path)
			}
		}
	}
}

// A hostile image ends with a verdict: directories that loop back to the
// root, or that all overlap the whole image, are read once each, their
// bytes counted against the layer's.
func TestISOHostileDirectories(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	pieces := make([][]byte, 200)
	for i := range pieces {
		pieces[i] = []byte(fmt.Sprintf("piece %d\n", i))
	}
	img := multiExtentISO(t, pieces)
	root, _ := parseISORecord(img[16*isoSector+156:16*isoSector+190], false)
	loop, overlap := bytes.Clone(img), bytes.Clone(img)
	for off := int(root.extent); off < int(root.extent+root.size); {
		if img[off] == 0 {
			off = (off/isoSector + 1) * isoSector
			continue
		}
		if img[off+33] == 'K' {
			// Every record a directory: the root itself, or the whole
			// image from the record's own sector on.
			loop[off+25] = 2
			copy(loop[off+2:off+6], img[16*isoSector+156+2:16*isoSector+156+6])
			overlap[off+25] = 2
			binary.LittleEndian.PutUint32(overlap[off+2:], uint32(off/isoSector))
			binary.LittleEndian.PutUint32(overlap[off+10:], uint32(len(img)-off/isoSector*isoSector))
		}
		off += int(img[off])
	}
	for name, data := range map[string][]byte{"loop": loop, "overlap": overlap} {
		if _, err := scanOne(t, s, tfile{name: "opt/x.iso", mode: 0o644, data: data}); err != nil && !errors.Is(err, ErrLimit) {
			t.Errorf("%s: %v, want a verdict or ErrLimit", name, err)
		}
	}
}

// isoRecords calls fn with the offset of every record of the directory
// tree whose volume descriptor is at sector vd, in the image img.
func isoRecords(t *testing.T, img []byte, vd int, fn func(off int)) {
	t.Helper()
	d := img[vd*isoSector:]
	root, ok := parseISORecord(d[156:190], d[0] == 2)
	if !ok {
		t.Fatalf("no root directory record at sector %d", vd)
	}
	for off := int(root.extent); off < int(root.extent+root.size); {
		if img[off] == 0 {
			off = (off/isoSector + 1) * isoSector
			continue
		}
		fn(off)
		off += int(img[off])
	}
}

// Images made to slip past the walk (outside attack round 22b): a file
// the Joliet tree lists where the primary's record is broken (F1), an
// image whose first 32 KiB hold a zip (F2), a directory record pointing
// at the volume descriptor before the file (F3), and files that are the
// whole image, nested three deep (R1).
func TestISOImagesAsBsdtarReadsThem(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	plain := bsdtarArchive(t, "kworker", miner, "--format", "iso9660", "--options", "!rockridge,joliet")
	// F1: the primary tree's record of the file points past the image.
	joliet := bytes.Clone(plain)
	isoRecords(t, joliet, 16, func(off int) {
		if joliet[off+32] > 1 && joliet[off+25]&2 == 0 {
			binary.LittleEndian.PutUint32(joliet[off+2:], 1<<30)
		}
	})
	// F2: a zip in the system area.
	zipped := bytes.Clone(plain)
	copy(zipped, zipOf(t, tfile{name: "readme", mode: 0o644, data: []byte("hello")}))
	// F3: the first record after the root's own, a directory at sector 16.
	badDir := bytes.Clone(plain)
	first := true
	isoRecords(t, badDir, 16, func(off int) {
		if badDir[off+32] > 1 && first {
			first = false
			badDir[off+25] = 2
			binary.LittleEndian.PutUint32(badDir[off+2:], 16)
		}
	})
	for _, c := range []struct {
		name string
		data []byte
	}{{"F1, Joliet", joliet}, {"F2, a zip first", zipped}, {"F3, a directory at the descriptor", badDir}} {
		res, err := scanOne(t, s, tfile{name: "opt/x.iso", mode: 0o644, data: c.data})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFindingIn(res.Findings, "MinerXMRig") {
			t.Errorf("%s: findings %v, want MinerXMRig in the image's file", c.name, res.Findings)
		}
	}
	// R1: every file record the whole image; the walk stays bounded.
	self := bsdtarArchive(t, "A", samples.Filler(64<<10), "--format", "iso9660", "--options", "!rockridge,!joliet")
	isoRecords(t, self, 16, func(off int) {
		if self[off+32] > 1 && self[off+25]&2 == 0 {
			binary.LittleEndian.PutUint32(self[off+2:], 0)
			binary.LittleEndian.PutUint32(self[off+10:], uint32(len(self)))
		}
	})
	if _, err := scanOne(t, s, tfile{name: "opt/x.iso", mode: 0o644, data: self}); err != nil && !errors.Is(err, ErrLimit) {
		t.Errorf("R1: %v, want a verdict or ErrLimit", err)
	}
}
