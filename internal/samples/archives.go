package samples

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io/fs"
	"strings"
)

// Tar returns an uncompressed tar of files (paths relative, as in a
// release tarball).
func Tar(files ...File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err) // writing to memory fails only on a bad header, a bug here
		}
		tw.Write(f.Data)
	}
	tw.Close()
	return buf.Bytes()
}

// Gzip returns b gzip-compressed.
func Gzip(b []byte) []byte { return gzipLevel(b, gzip.DefaultCompression) }

// gzipLevel returns b gzip-compressed at level (BestSpeed for large
// padded archives: incompressible padding gains nothing from more).
func gzipLevel(b []byte, level int) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		panic(err)
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// Zip returns a zip (or jar) of files, deflated, each with its Unix mode.
func Zip(files ...File) []byte { return zipOf(zip.Deflate, nil, files) }

// zipOf returns a zip of files compressed with method, by comp when
// archive/zip has no compressor of its own for it.
func zipOf(method uint16, comp zip.Compressor, files []File) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	if comp != nil {
		zw.RegisterCompressor(method, comp)
	}
	for _, f := range files {
		fh := &zip.FileHeader{Name: strings.TrimPrefix(f.Path, "/"), Method: method}
		fh.SetMode(fs.FileMode(f.Mode))
		w, err := zw.CreateHeader(fh)
		if err != nil {
			panic(err)
		}
		w.Write(f.Data)
	}
	zw.Close()
	return buf.Bytes()
}

// XMRigRelease is the layout of XMRig's own release tarball, with the
// stand-in miner.
func XMRigRelease() []File {
	return []File{
		text("xmrig-6.21.0/SHA256SUMS", "0000  xmrig\n"),
		exe("xmrig-6.21.0/xmrig", XMRig()),
		text("xmrig-6.21.0/config.json", "{}\n"),
	}
}

// Makeself is a self-extracting shell script in the style of makeself
// droppers: payload (a .tar.gz) base64-encoded in a here-document of
// 76-character lines, piped to base64 -d | tar xz, then run.
func Makeself(payload []byte) string {
	enc := base64.StdEncoding.EncodeToString(payload)
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# self-extracting installer\nbase64 -d <<'EOF' | tar xz -C /tmp\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\nEOF\nexec /tmp/xmrig-6.21.0/xmrig\n")
	return b.String()
}

// archivePositives are miners inside archives in a layer.
func archivePositives() []Case {
	padded := append(XMRigRelease(), text("xmrig-6.21.0/README", string(Filler(6<<10))))
	// The miner after the padding, past the archive's first window.
	large := append([]File{{Path: "xmrig-6.21.0/data.bin", Mode: 0o644, Data: Filler(largePad)}}, XMRigRelease()...)
	return []Case{
		one("xmrig-release-tar-gz", "archive", text("/opt/x/xmrig-6.21.0-linux-static-x64.tar.gz", string(Gzip(Tar(XMRigRelease()...)))), "MinerXMRig"),
		one("xmrig-release-zip", "archive", text("/opt/x/xmrig.zip", string(Zip(XMRigRelease()...))), "MinerXMRig"),
		one("xmrig-in-jar", "archive", text("/app/lib/native-helper.jar", string(Zip(text("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n"), File{Path: "native/linux-x86_64/libhelper.so", Mode: 0o644, Data: XMRig()}))), "MinerXMRig"),
		one("xmrig-gz", "archive", text("/usr/share/misc/kworker.gz", string(Gzip(XMRig()))), "MinerXMRig"),
		one("xmrig-nested-3", "archive", text("/opt/bundle.zip", string(Zip(text("b.tar.gz", string(Gzip(Tar(text("c.jar", string(Zip(XMRigRelease()...)))))))))), "MinerXMRig"),
		one("makeself-dropper", "archive", script("/tmp/install.sh", Makeself(Gzip(Tar(padded...)))), "MinerXMRig"),
		one("xmrig-large-tar-gz", "archive", text("/opt/x/xmrig-large.tar.gz", string(gzipLevel(Tar(large...), gzip.BestSpeed))), "MinerXMRig"),
		one("xmrig-large-zip", "archive", text("/opt/x/xmrig-large.zip", string(Zip(large...))), "MinerXMRig"),
		one("xmrig-zip-lzma", "archive", text("/opt/x/xmrig-lzma.zip", string(ZipMethod(ZipLZMA, XMRigRelease()...))), "MinerXMRig"),
		one("xmrig-zip-xz", "archive", text("/opt/x/xmrig-xz.zip", string(ZipMethod(ZipXz, XMRigRelease()...))), "MinerXMRig"),
		one("xmrig-zip-zstd", "archive", text("/opt/x/xmrig-zstd.zip", string(ZipMethod(ZipZstd, XMRigRelease()...))), "MinerXMRig"),
		one("xmrig-large-gz", "archive", text("/usr/share/misc/kworker-large.gz", string(gzipLevel(append(XMRig(), Filler(largePad)...), gzip.BestSpeed))), "MinerXMRig"),
	}
}

// largePad takes an archive past the scanner's default window (16 MiB):
// incompressible bytes, so the compressed archive is as large.
const largePad = 20 << 20

// archiveNearMisses are benign archives in a layer.
func archiveNearMisses() []Case {
	class := append([]byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 61}, Filler(2000)...)
	return []Case{
		one("jar-of-classes", "archive", text("/app/app.jar", string(Zip(text("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: com.example.Main\n"),
			File{Path: "com/example/Main.class", Mode: 0o644, Data: class})))),
		one("gz-of-text", "archive", text("/usr/share/doc/app/changelog.gz", string(Gzip([]byte(strings.Repeat("fixed a bug in the parser\n", 500)))))),
	}
}
