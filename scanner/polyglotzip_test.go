package scanner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// zipTarPolyglot builds a file that is a valid zip (one clean stored
// member) and a valid ustar tar whose one member is payload after pad
// zero bytes: the zip's first local header is the tar header's first 30
// bytes, its file name the rest of that block, and its extra field the
// tar member's data, followed by the member's memberSize zero bytes. tar reads the payload from it; a zip reader sees only
// the clean member.
func zipTarPolyglot(t *testing.T, payload []byte, pad, memberSize int) []byte {
	t.Helper()
	data := append(make([]byte, pad), payload...)
	data = append(data, make([]byte, (blockSize-len(data)%blockSize)%blockSize)...)
	if len(data) > 0xffff {
		t.Fatalf("a tar member of %d bytes does not fit a zip extra field", len(data))
	}
	member := make([]byte, memberSize)
	crc := crc32.ChecksumIEEE(member)
	var lh bytes.Buffer
	for _, v := range []any{uint32(0x04034b50), uint16(20), uint16(0), uint16(0), uint16(0), uint16(0x21),
		crc, uint32(len(member)), uint32(len(member)), uint16(blockSize - 30), uint16(len(data))} {
		binary.Write(&lh, binary.LittleEndian, v)
	}
	h := make([]byte, blockSize)
	copy(h, lh.Bytes())
	put := func(off int, s string) { copy(h[off:], s) }
	put(100, "0000755\x00")
	put(108, "0000000\x00")
	put(116, "0000000\x00")
	put(124, fmt.Sprintf("%011o\x00", len(data)))
	put(136, "00000000000\x00")
	put(156, "0")
	put(257, "ustar\x0000")
	put(148, "        ")
	sum := 0
	for _, b := range h {
		sum += int(b)
	}
	put(148, fmt.Sprintf("%06o\x00 ", sum))
	name := h[30:]
	body := append(append(bytes.Clone(h), data...), member...)
	var cd bytes.Buffer
	for _, v := range []any{uint32(0x02014b50), uint16(0x031e), uint16(20), uint16(0), uint16(0), uint16(0), uint16(0x21),
		crc, uint32(len(member)), uint32(len(member)), uint16(len(name)), uint16(0), uint16(0), uint16(0), uint16(0),
		uint32(0o100644 << 16), uint32(0)} {
		binary.Write(&cd, binary.LittleEndian, v)
	}
	cd.Write(name)
	out := append(body, cd.Bytes()...)
	var end bytes.Buffer
	for _, v := range []any{uint32(0x06054b50), uint16(0), uint16(0), uint16(1), uint16(1), uint32(cd.Len()), uint32(len(body)), uint16(0)} {
		binary.Write(&end, binary.LittleEndian, v)
	}
	return append(out, end.Bytes()...)
}

// A zip that is also a tar is not trusted to hold only its members: tar
// unpacks the miner from bytes the zip calls a header's extra field. It is
// scanned whole as bytes and walked as a tar too, in one window and
// larger than one (spooled).
func TestZipTarPolyglotRefused(t *testing.T) {
	miner := samples.XMRig()
	cases := []struct {
		name   string
		member int
		limits Limits
	}{
		{"one window", 1 << 10, Limits{}},
		{"larger than a window", 2 * minWindow, Limits{Window: minWindow}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			poly := zipTarPolyglot(t, miner, 8<<10, c.member)
			if c.limits.Window != 0 && int64(len(poly)) <= c.limits.Window {
				t.Fatalf("the polyglot (%d bytes) fits one window of %d: the case proves nothing", len(poly), c.limits.Window)
			}
			s := newTestScanner(t, Options{Workers: 2, Limits: c.limits})
			res, err := scanOne(t, s, tfile{name: "opt/app/bundle.bin", mode: 0o644, data: poly})
			if err != nil {
				t.Fatal(err)
			}
			f, ok := findingOf(res.Findings, "MinerXMRig")
			if !ok {
				t.Fatalf("findings %+v: the miner tar unpacks from the polyglot was not found", res.Findings)
			}
			if !strings.HasPrefix(f.Path, "/opt/app/bundle.bin") {
				t.Errorf("finding at %q, not in /opt/app/bundle.bin", f.Path)
			}
		})
	}
}
