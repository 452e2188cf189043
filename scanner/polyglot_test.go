package scanner

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// fixChecksum rewrites a tar header block's checksum after its bytes were
// changed.
func fixChecksum(block []byte) {
	copy(block[148:156], "        ")
	var sum int64
	for _, c := range block[:blockSize] {
		sum += int64(c)
	}
	copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// overlay makes a tar whose first bytes are prefix: the first entry's name
// absorbs them, so the bytes still read as a tar that carries the miner.
func overlay(t *testing.T, prefix []byte) []byte {
	t.Helper()
	raw := tarLayer(t,
		tfile{name: "xxxxxxxxxxxxxxxxxxxx/pad", mode: 0o644, data: []byte("pad")},
		tfile{name: "usr/bin/kworker", mode: 0o755, data: samples.XMRig()},
	)
	copy(raw, prefix)
	fixChecksum(raw)
	return raw
}

// gzipWithExtra is a gzip stream of body whose header's extra field holds
// extra, written by hand (XLEN, then the field).
func gzipWithExtra(t *testing.T, extra, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Write([]byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff})
	binary.Write(&b, binary.LittleEndian, uint16(len(extra)))
	b.Write(extra)
	fw, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(body)
	fw.Close()
	binary.Write(&b, binary.LittleEndian, crc32.ChecksumIEEE(body))
	binary.Write(&b, binary.LittleEndian, uint32(len(body)))
	return b.Bytes()
}

// rawTarHas reports whether the blob, read as a tar without decompressing
// (as containerd reads a layer whose media type says uncompressed tar),
// writes out name.
func rawTarHas(blob []byte, name string) bool {
	tr := tar.NewReader(bytes.NewReader(blob))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return false
		}
		if hdr.Name == name {
			return true
		}
	}
}

// A blob that is a compressed stream and, as it stands, also a tar is two
// layers at once: the clean one the decompressing reader sees and the
// miner a reader that does not decompress unpacks. Both scans refuse it.
func TestPolyglotBlobsRefused(t *testing.T) {
	clean := tarLayer(t, tfile{name: "a", mode: 0o644, data: []byte("a")})

	// gzip: the tar sits in the header's extra field.
	gzHead := gzipWithExtra(t, make([]byte, 1), nil)[:12]
	var gz []byte
	{
		raw := overlay(t, gzHead)
		binary.LittleEndian.PutUint16(raw[10:12], uint16(len(raw)-12))
		fixChecksum(raw)
		gz = gzipWithExtra(t, raw[12:], clean)
	}
	// zstd: the tar is the payload of a skippable frame, before a frame of
	// the clean tar.
	var zst []byte
	{
		raw := overlay(t, []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0})
		binary.LittleEndian.PutUint32(raw[4:8], uint32(len(raw)-8))
		fixChecksum(raw)
		zst = append(raw, zstdBytes(t, clean)...)
	}

	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range []struct {
		name string
		blob []byte
	}{{"gzip extra field", gz}, {"zstd skippable frame", zst}} {
		t.Run(c.name, func(t *testing.T) {
			if !rawTarHas(c.blob, "usr/bin/kworker") {
				t.Fatal("the crafted blob does not carry the miner as a raw tar: the test is broken")
			}
			for name, scan := range map[string]func(context.Context, io.Reader, Prioritizer) (Result, error){
				"ScanLayer": s.ScanLayer, "ScanArtifact": s.ScanArtifact,
			} {
				_, err := scan(context.Background(), bytes.NewReader(c.blob), Interactive)
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v, want ErrCorrupt (reads as a tar and as a compressed stream)", name, err)
				}
			}
		})
	}
}

// Bytes after a layer's end-of-archive blocks are scanned: no unpacker
// reads them, a puller reading by offset may.
func TestBytesAfterTheEndOfArchiveScanned(t *testing.T) {
	blob := append(tarLayer(t, tfile{name: "a", mode: 0o644, data: []byte("a")}), samples.XMRig()...)
	s := newTestScanner(t, Options{Workers: 1})
	res, err := s.ScanLayer(context.Background(), bytes.NewReader(blob), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blocking()) == 0 {
		t.Fatalf("a miner after the end of the archive passed: %+v", res.Findings)
	}
}
