package isal

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os/exec"
	"testing"
	"testing/iotest"
)

// member is a gzip member of data with the header fields given (nil for
// none) and, if hcrc, the header's CRC-16.
func member(t *testing.T, data, extra, name, comment []byte, hcrc bool) []byte {
	t.Helper()
	h := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}
	if extra != nil {
		h[3] |= 4
		h = binary.LittleEndian.AppendUint16(h, uint16(len(extra)))
		h = append(h, extra...)
	}
	for _, f := range []struct {
		flag byte
		b    []byte
	}{{8, name}, {16, comment}} {
		if f.b != nil {
			h[3] |= f.flag
			h = append(append(h, f.b...), 0)
		}
	}
	if hcrc {
		h[3] |= 2
		h = binary.LittleEndian.AppendUint16(h, uint16(crc32.ChecksumIEEE(h)))
	}
	var body bytes.Buffer
	fw, _ := flate.NewWriter(&body, flate.DefaultCompression)
	fw.Write(data)
	fw.Close()
	h = append(h, body.Bytes()...)
	h = binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(data))
	return binary.LittleEndian.AppendUint32(h, uint32(len(data)))
}

// Headers of every length gzip -d takes are read whatever the source's
// reads: with a CRC-16, ISA-L refused one that came in more than one
// step.
func TestLongHeaders(t *testing.T) {
	data := sample(10000)
	long := func(n int) []byte { return bytes.Repeat([]byte{'c'}, n) }
	for _, c := range []struct {
		name                  string
		extra, fname, comment []byte
	}{
		{"comment of 4,084", nil, nil, long(4084)},
		{"comment of 70,000", nil, nil, long(70000)},
		{"extra of 65,535", long(65535), nil, nil},
		{"all three", long(30000), long(30000), long(30000)},
		{"none", nil, nil, nil},
	} {
		for _, hcrc := range []bool{false, true} {
			m := member(t, data, c.extra, c.fname, c.comment, hcrc)
			// gzip -d is the reference for the member (the standard
			// library refuses names and comments over 512 bytes).
			cmd := exec.Command("gzip", "-dc")
			cmd.Stdin = bytes.NewReader(m)
			if want, err := cmd.Output(); err != nil || !bytes.Equal(want, data) {
				t.Fatalf("%s: gzip -dc: %v", c.name, err)
			}
			for _, src := range []io.Reader{bytes.NewReader(m), iotest.HalfReader(bytes.NewReader(m)), iotest.OneByteReader(bytes.NewReader(m))} {
				r, err := NewReader(src)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s, header CRC %v: %d bytes, %v", c.name, hcrc, len(got), err)
				}
			}
		}
	}
	// A header longer than the input buffer is an error of its own.
	r, _ := NewReader(bytes.NewReader(member(t, data, nil, long(inSize), nil, false)))
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrHeaderTooLong) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a name of %d bytes: %v, want ErrHeaderTooLong", inSize, err)
	}
}
