package scanner

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// An extended attribute's value is written onto the unpacked file by the
// clients, where a loader can read it back: a miner in one is refused, on
// a file or a directory, in SCHILY or LIBARCHIVE records; benign
// attributes give nothing.
func TestXattrValuesScanned(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := string(samples.XMRig())
	cases := []struct {
		name     string
		typeflag byte
		records  map[string]string
		want     string // the path of the MinerXMRig finding, "" for none
	}{
		{"schily on a file", tar.TypeReg, map[string]string{"SCHILY.xattr.user.payload": miner},
			"/usr/bin/helper (xattr user.payload)"},
		{"schily on a directory", tar.TypeDir, map[string]string{"SCHILY.xattr.trusted.blob": miner},
			"/usr/bin/helper (xattr trusted.blob)"},
		{"libarchive base64", tar.TypeReg, map[string]string{"LIBARCHIVE.xattr.user.p": base64.StdEncoding.EncodeToString([]byte(miner))},
			"/usr/bin/helper (xattr user.p)"},
		{"benign attributes", tar.TypeReg, map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x04\x00\x00",
			"SCHILY.xattr.user.mime_type": "text/plain"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			body := []byte("#!/bin/sh\nexit 0\n")
			h := &tar.Header{Name: "usr/bin/helper", Mode: 0o755, Typeflag: c.typeflag, PAXRecords: c.records, Format: tar.FormatPAX}
			if c.typeflag == tar.TypeReg {
				h.Size = int64(len(body))
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if c.typeflag == tar.TypeReg {
				tw.Write(body)
			}
			tw.Close()
			res, err := s.ScanLayer(t.Context(), bytes.NewReader(buf.Bytes()), Interactive)
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if c.want == "" && len(res.Findings) != 0 || c.want != "" && !hasFinding(res.Findings, "MinerXMRig", c.want) {
				t.Fatalf("findings %v, want MinerXMRig on %q", res.Findings, c.want)
			}
		})
	}
}
