package scanner

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// A miner cut into eight slices, each in a frame of another format than
// the one before it, is whole only in what zstd -dc writes: that is read
// and scanned as the file "x!zstd -dc" (outside attack round 21, F1).
// Each slice alone is not refused, which the test checks first.
func TestZstdJoinsFormats(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	const k = 8
	slice := func(i int) []byte { return miner[i*len(miner)/k : (i+1)*len(miner)/k] }
	for i := range k {
		res, err := scanOne(t, s, tfile{name: "opt/slice", mode: 0o644, data: slice(i)})
		if err != nil || len(res.Blocking()) > 0 {
			t.Fatalf("slice %d alone: findings %v, %v; the test needs slices that are not refused", i, res.Findings, err)
		}
	}
	frame := map[string]func([]byte) []byte{
		"zstd": func(b []byte) []byte { return cli(t, b, "zstd", "-c", "-q") },
		"gzip": func(b []byte) []byte { return gzipBytes(t, b) },
		"xz":   func(b []byte) []byte { return cli(t, b, "xz", "-c") },
		"lzma": func(b []byte) []byte { return cli(t, b, "xz", "--format=lzma", "-c") },
		"lz4":  func(b []byte) []byte { return cli(t, b, "lz4", "-c", "-q") },
	}
	skippable := []byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}
	cases := []struct {
		name   string
		orders []string // the format of each slice's frame
		before []byte   // between the first frame and the second
	}{
		{"zstd first", []string{"zstd", "gzip", "xz", "lz4", "lzma", "zstd", "gzip", "xz"}, nil},
		{"gzip first", []string{"gzip", "zstd", "gzip", "zstd", "gzip", "zstd", "gzip", "zstd"}, nil},
		{"xz first", []string{"xz", "lz4", "xz", "lz4", "xz", "lz4", "xz", "lz4"}, nil},
		{"lzma first", []string{"lzma", "gzip", "lzma", "gzip", "lzma", "gzip", "lzma", "gzip"}, nil},
		{"lz4 first, a skippable frame", []string{"lz4", "zstd", "lz4", "zstd", "lz4", "zstd", "lz4", "zstd"}, skippable},
	}
	for _, c := range cases {
		var file []byte
		for i, f := range c.orders {
			file = append(file, frame[f](slice(i))...)
			if i == 0 {
				file = append(file, c.before...)
			}
		}
		if got := toolOutput("zstd", file); !bytes.Equal(got, miner) {
			t.Fatalf("%s: zstd -dc writes %d bytes, not the miner", c.name, len(got))
		}
		res, err := scanOne(t, s, tfile{name: "opt/x.zst", mode: 0o644, data: file})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/opt/x.zst!zstd -dc") {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/x.zst!zstd -dc", c.name, res.Findings)
		}
		// Behind a script (tail -c | zstd -dc), read once from the first
		// frame: each frame after it is in that reading.
		head := fmt.Sprintf("#!/bin/sh\ntail -c +%d \"$0\" | zstd -dc > /tmp/k; exec /tmp/k\n", 61)
		head = fmt.Sprintf("#!/bin/sh\ntail -c +%d \"$0\" | zstd -dc > /tmp/k; exec /tmp/k\n", len(head)+1)
		res, err = scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: append([]byte(head), file...)})
		if err != nil {
			t.Fatalf("%s, behind a script: %v", c.name, err)
		}
		at := fmt.Sprintf("/opt/run.sh!%s@%d!zstd -dc", c.orders[0], len(head))
		if !hasFinding(res.Findings, "MinerXMRig", at) {
			t.Errorf("%s, behind a script: findings %v, want MinerXMRig in %s", c.name, res.Findings, at)
		}
		for _, f := range res.Findings {
			if strings.HasSuffix(f.Path, "zstd -dc") && f.Path != at {
				t.Errorf("%s, behind a script: %s read again from a later frame", c.name, f.Path)
			}
		}
	}
}

// gzip -dc joins gzip members, gzip 0.5's members, pack(1) members and a
// compress(1) stream that ends the file: a miner cut into slices over
// them is read whole, as "x!gzip -dc" (outside attack round 21, left).
func TestGzipJoinsFormats(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	const k = 8
	slice := func(i int) []byte { return miner[i*len(miner)/k : (i+1)*len(miner)/k] }
	frame := map[string]func([]byte) []byte{
		"gzip": func(b []byte) []byte { return gzipBytes(t, b) },
		"old":  func(b []byte) []byte { return oldGzip(gzipBytes(t, b)) },
		"pack": func(b []byte) []byte { return packEncode(t, b) },
		// gzip 0.5's magic with a header CRC-16 over it, which gzip -d
		// checks over the bytes as they stand.
		"oldcrc": func(b []byte) []byte {
			m := oldGzip(gzipBytes(t, b))
			h := bytes.Clone(m[:10])
			h[3] |= 2
			sum := crc32.ChecksumIEEE(h)
			return slices.Concat(h, []byte{byte(sum), byte(sum >> 8)}, m[10:])
		},
	}
	for _, order := range [][]string{
		{"gzip", "pack", "gzip", "pack", "gzip", "pack", "gzip", "Z"},
		{"pack", "gzip", "pack", "old", "pack", "gzip", "pack", "gzip"},
		{"old", "pack", "pack", "old", "gzip", "pack", "old", "Z"},
		{"pack", "oldcrc", "pack", "oldcrc", "pack", "oldcrc", "pack", "oldcrc"},
	} {
		var file []byte
		for i, f := range order {
			if f == "Z" { // to the end: every slice left
				file = append(file, lzwCompress(miner[i*len(miner)/k:], 16)...)
				break
			}
			file = append(file, frame[f](slice(i))...)
		}
		if got := toolOutput("gzip", file); !bytes.Equal(got, miner) {
			t.Fatalf("%v: gzip -dc writes %d bytes, not the miner", order, len(got))
		}
		res, err := scanOne(t, s, tfile{name: "opt/x.gz", mode: 0o644, data: file})
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/opt/x.gz!gzip -dc") {
			t.Errorf("%v: findings %v, want MinerXMRig in /opt/x.gz!gzip -dc", order, res.Findings)
		}
	}
}

// A file of one format followed by other bytes is not read a second time
// as zstd -dc reads it: that would give what its own stream gave.
func TestZstdJoinOneFormatNotRead(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	text := bytes.Repeat([]byte("a line of the changelog\n"), 200)
	for _, file := range [][]byte{
		append(gzipBytes(t, text), make([]byte, 100)...),
		slices.Concat(gzipBytes(t, text), gzipBytes(t, text), []byte("trailing")),
		append(cli(t, text, "zstd", "-c", "-q"), "trailing"...),
	} {
		res, err := scanOne(t, s, tfile{name: "opt/x.gz", mode: 0o644, data: file})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range res.Findings {
			if strings.Contains(f.Path, "zstd -dc") {
				t.Errorf("finding %v: a file of one format read again", f)
			}
		}
	}
}

// A file over one window (16 MiB) is joined too: the miner in slices, one
// per frame of another format, then a frame of padding past the window.
// Read from the spool, as the file itself and behind a script (outside
// attack round 22b left it).
func TestJoinedPastOneWindow(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	const k = 4
	slice := func(i int) []byte { return miner[i*len(miner)/k : (i+1)*len(miner)/k] }
	pad := make([]byte, 17<<20)
	if _, err := rand.Read(pad); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		tool, name string
		frames     []func([]byte) []byte
		last       []byte // the padding's frame
	}{
		{"zstd", "opt/x.zst", []func([]byte) []byte{
			func(b []byte) []byte { return gzipBytes(t, b) },
			func(b []byte) []byte { return cli(t, b, "xz", "-c") },
			func(b []byte) []byte { return cli(t, b, "zstd", "-c", "-q") },
			func(b []byte) []byte { return cli(t, b, "lz4", "-c", "-q") },
		}, cli(t, pad, "zstd", "-c", "-q", "-1")},
		{"gzip", "opt/x.gz", []func([]byte) []byte{
			func(b []byte) []byte { return gzipBytes(t, b) },
			func(b []byte) []byte { return packEncode(t, b) },
			func(b []byte) []byte { return gzipBytes(t, b) },
			func(b []byte) []byte { return packEncode(t, b) },
		}, gzipBytes(t, pad)},
	}
	for _, c := range cases {
		var file []byte
		for i, f := range c.frames {
			file = append(file, f(slice(i))...)
		}
		file = append(file, c.last...)
		if got := toolOutput(c.tool, file); !bytes.Equal(got, slices.Concat(miner, pad)) {
			t.Fatalf("%s -dc does not write the miner and the padding", c.tool)
		}
		at := "/" + c.name + "!" + c.tool + " -dc"
		res, err := scanOne(t, s, tfile{name: c.name, mode: 0o644, data: file})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", at) {
			t.Errorf("%s: findings %v, want MinerXMRig in %s", c.name, res.Findings, at)
		}
		head := fmt.Sprintf("#!/bin/sh\ntail -c +%d \"$0\" | %s -dc > /tmp/k; exec /tmp/k\n", 100, c.tool)
		head = fmt.Sprintf("#!/bin/sh\ntail -c +%d \"$0\" | %s -dc > /tmp/k; exec /tmp/k\n", len(head)+1, c.tool)
		res, err = scanOne(t, s, tfile{name: "opt/run.sh", mode: 0o755, data: append([]byte(head), file...)})
		if err != nil {
			t.Fatalf("%s behind a script: %v", c.name, err)
		}
		at = fmt.Sprintf("/opt/run.sh!gzip@%d!%s -dc", len(head), c.tool)
		if !hasFinding(res.Findings, "MinerXMRig", at) {
			t.Errorf("%s behind a script: findings %v, want MinerXMRig in %s", c.name, res.Findings, at)
		}
	}
}

// gzipWithComment is a gzip member of b whose header carries a comment of
// n bytes, which zlib and gzip read whatever its length.
func gzipWithComment(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	var body bytes.Buffer
	fw, err := flate.NewWriter(&body, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(b)
	fw.Close()
	out := []byte{0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 3}
	out = append(out, bytes.Repeat([]byte("c"), n)...)
	out = append(out, 0)
	out = append(out, body.Bytes()...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(b))
	return binary.LittleEndian.AppendUint32(out, uint32(len(b)))
}

// A gzip member among frames that zstd -dc joins is read with a name or a
// comment of any length, as zlib reads it (outside attack round 23, F1
// and F1b: Go's compress/gzip refused fields of 512 bytes or more, and
// a member with a header over 256 KiB after an empty xz stream was
// served).
func TestJoinedGzipLongHeaderFields(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	const k = 8
	slice := func(i int) []byte { return miner[i*len(miner)/k : (i+1)*len(miner)/k] }
	var sliced []byte
	for i := range k {
		if i%2 == 0 {
			sliced = append(sliced, cli(t, slice(i), "xz", "-c")...)
		} else {
			sliced = append(sliced, gzipWithComment(t, slice(i), 600)...)
		}
	}
	for _, c := range []struct {
		name string
		file []byte
	}{
		{"slices in xz streams and gzip members with 600-byte comments", sliced},
		{"an empty xz stream, then the miner in a gzip member with a 300,000-byte comment", append(cli(t, nil, "xz", "-c"), gzipWithComment(t, miner, 300_000)...)},
	} {
		if got := toolOutput("zstd", c.file); !bytes.Equal(got, miner) {
			t.Fatalf("%s: zstd -dc writes %d bytes, not the miner", c.name, len(got))
		}
		res, err := scanOne(t, s, tfile{name: "opt/x.xz", mode: 0o644, data: c.file})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !hasFinding(res.Findings, "MinerXMRig", "/opt/x.xz!zstd -dc") {
			t.Errorf("%s: findings %v, want MinerXMRig in /opt/x.xz!zstd -dc", c.name, res.Findings)
		}
	}
}
