package isal

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os/exec"
	"testing"
)

// A member with gzip 0.5's magic, 1f 9e, is read as gzip -d reads it: as
// a gzip member, first or after others, whatever the reads that bring
// its header in. One whose header has a CRC-16 is refused.
func TestOldMagic(t *testing.T) {
	a, b := sample(5000), sample(70000)
	old := func(m []byte) []byte {
		m = bytes.Clone(m)
		m[1] = 0x9e
		return m
	}
	cases := []struct {
		name string
		blob []byte
	}{
		{"first", old(gz(t, a))},
		{"later", append(gz(t, a), old(gz(t, b))...)},
		{"both", append(old(gz(t, a)), old(gz(t, b))...)},
	}
	for _, c := range cases {
		want := a
		if len(c.blob) > len(gz(t, a)) {
			want = append(bytes.Clone(a), b...)
		}
		if gzipd, err := exec.LookPath("gzip"); err == nil {
			cmd := exec.Command(gzipd, "-dc")
			cmd.Stdin = bytes.NewReader(c.blob)
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, want) {
				t.Fatalf("%s: the host's gzip -dc gives %d bytes (%v), not what the test expects", c.name, len(out), err)
			}
		}
		for _, chunk := range []int{1, 7, 1 << 30} {
			got, err := inflate(t, c.blob, chunk)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s, reads of %d: %d bytes, %v; want %d", c.name, chunk, len(got), err, len(want))
			}
		}
	}
	// A header CRC-16 over the header with its old magic holds, as gzip
	// -d checks it; one over the header with gzip's magic does not.
	if got, err := inflate(t, withHeaderCRC(t, gz(t, a), 0x9e), 1<<30); err != nil || !bytes.Equal(got, a) {
		t.Errorf("old magic with its header CRC-16: %d bytes, %v", len(got), err)
	}
	if _, err := inflate(t, withHeaderCRC(t, gz(t, a), 0x8b), 1<<30); !errors.Is(err, ErrCorrupt) {
		t.Errorf("old magic with a header CRC-16 over gzip's magic: %v, want ErrCorrupt", err)
	}
}

// withHeaderCRC gives a member of ten header bytes the old magic and a
// header CRC-16, computed with magic as the header's second byte.
func withHeaderCRC(t *testing.T, m []byte, magic byte) []byte {
	t.Helper()
	if m[3] != 0 {
		t.Fatalf("header flags %#x, want none", m[3])
	}
	h := bytes.Clone(m[:10])
	h[3] = 2
	h[1] = magic
	sum := crc32.ChecksumIEEE(h)
	h[1] = 0x9e
	return append(append(h, byte(sum), byte(sum>>8)), m[10:]...)
}
