package scanner

import (
	"archive/tar"
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/ulikunitz/xz"
)

// cutOut is what tail -c +off+1 | gzip -dc (zstd -dc for a zstd frame)
// writes of data, on this host.
func cutOut(t *testing.T, data []byte, off int) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "data.gz")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tool := "gzip"
	if nestedCompression(data[off:]) == compressedZstd {
		tool = "zstd"
	}
	out, _ := exec.Command("sh", "-c", fmt.Sprintf("tail -c +%d %s | %s -dc 2>/dev/null", off+1, f, tool)).Output()
	return out
}

// A compressed file's stream ends where its format does, and a tar where
// its end blocks are: what follows them, or lies in a gzip header's
// fields, is there for tail -c to cut out and gzip -dc to unpack (round
// 18's F4 and F5). It is searched as behind any
// prefix, and a gzip member that starts as a program is read on its own,
// not only as the tail of the members before it.
func TestStreamsAfterACompressedFileRead(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := gzipBytes(t, samples.XMRig())
	benign := gzipBytes(t, []byte("release notes\n"))
	junk := []byte("JUNK\x00\x01\x02 trailing bytes")
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	bigTar := tarLayer(t, tfile{name: "data.bin", mode: 0o644, data: samples.Filler(big)})
	bigGzip := gzipBytes(t, samples.Filler(big))
	zstdMiner := zstdBytes(t, samples.XMRig())
	bigZstd := zstdBytes(t, samples.Filler(big))
	benignZip := zipOf(t, reg("a.txt", 0o644, "hello\n"), reg("b/c.gz", 0o644, string(gzipBytes(t, []byte("inner\n")))))
	for _, c := range []struct {
		name string
		data []byte
		off  int // where the miner's gzip starts
	}{
		{"gzip, other bytes, gzip", join(benign, junk, miner), len(benign) + len(junk)},
		{"gzip, zeros, gzip", join(benign, make([]byte, 700), miner), len(benign) + 700},
		{"zstd, other bytes, gzip", join(zstdBytes(t, []byte("release notes\n")), junk, miner), len(zstdBytes(t, []byte("release notes\n"))) + len(junk)},
		{"gzip, then a member that is a program", join(benign, miner), len(benign)},
		{"gzip in a gzip header's extra field", samples.InGzipExtra(samples.XMRig()), 12},
		{"zstd in a zstd file's skippable frame", join(skippable(zstdMiner), zstdBytes(t, []byte("release notes\n"))), 8},
		{"zip, then gzip after its end record", join(benignZip, miner), len(benignZip)},
		{"gzip between two tar members", join(first512(t), pad512(miner), tarLayer(t, reg("b", 0o644, "b\n"))), 2 * blockSize},
		{"gzip in a zip's comment", zipComment(benignZip, miner), len(benignZip)},
		{"tar, then gzip", join(tarLayer(t, reg("notes.txt", 0o644, "notes\n")), miner), 2048},
		{"tar over the scan window, other bytes, gzip", join(bigTar, junk, miner), len(bigTar) + len(junk)},
		{"tar over the scan window, then gzip", join(bigTar, miner), len(bigTar)},
		{"gzip over the scan window with a gzip in its header", gzipExtraOf(bigGzip, miner), 12},
		{"zstd over the scan window after a skippable frame holding a gzip", join(skippable(miner), bigZstd), 8},
		{"gzip over the scan window, other bytes, gzip", join(bigGzip, junk, miner), len(bigGzip) + len(junk)},
	} {
		t.Run(c.name, func(t *testing.T) {
			format := nestedCompression(c.data[c.off:])
			if !bytes.HasPrefix(cutOut(t, c.data, c.off), samples.XMRig()) {
				t.Fatalf("tail -c +%d | %v -dc does not give the miner: the case is wrong", c.off+1, format)
			}
			res, err := scanOne(t, s, tfile{name: "opt/data.gz", mode: 0o644, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			// Between tar members, the stream is what the walk skipped.
			skipped := map[string]string{"gzip between two tar members": "/opt/data.gz!skipped@1024!gzip"}
			want := cmp.Or(skipped[c.name], fmt.Sprintf("/opt/data.gz!%v@%d!%[1]v", format, c.off))
			if !hasFinding(res.Findings, "MinerXMRig", want) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, want)
			}
		})
	}
}

// Base64 after a compressed file's stream or a tar's end, for tail -c |
// base64 -d (outside attack round 19).
func TestBase64AfterACompressedFileRead(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	payload := append(samples.XMRig(), samples.Filler(8<<10)...)
	b64 := []byte(wrappedBase64(payload))
	junk := []byte("JUNK\x00\x01\x02 trailing bytes\n")
	bigGzip := gzipBytes(t, samples.Filler(big))
	for _, c := range []struct {
		name string
		head []byte
	}{
		{"gzip", gzipBytes(t, []byte("release notes\n"))},
		{"tar", tarLayer(t, reg("notes.txt", 0o644, "notes\n"))},
		{"gzip over the scan window", bigGzip},
		{"tar over the scan window", tarLayer(t, tfile{name: "data.bin", mode: 0o644, data: samples.Filler(big)})},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := bytes.Join([][]byte{c.head, junk, b64}, nil)
			off := len(c.head) + len(junk)
			f := filepath.Join(t.TempDir(), "data")
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, _ := exec.Command("sh", "-c", fmt.Sprintf("tail -c +%d %s | base64 -d", off+1, f)).Output()
			if !bytes.Equal(out, payload) {
				t.Fatalf("tail -c +%d | base64 -d does not give the miner: the case is wrong", off+1)
			}
			res, err := scanOne(t, s, tfile{name: "opt/data.gz", mode: 0o644, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if want := fmt.Sprintf("/opt/data.gz!base64@%d", off); !hasFinding(res.Findings, "MinerXMRig", want) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, want)
			}
		})
	}
}

// The streams a compressed file's own reading covers are not read again
// behind its start: the members of a gzip file (bgzip writes one per 64
// KiB), the frames of a zstd file (pzstd), concatenated xz streams.
func TestOwnStreamsNotReadAgain(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range []struct {
		name string
		part func(testing.TB, []byte) []byte
	}{{"gzip members", gzipBytes}, {"zstd frames", zstdBytes}, {"xz streams", xzBytes}} {
		t.Run(c.name, func(t *testing.T) {
			var data []byte
			plain := 0
			// More than the 64 streams read behind one file's start
			// (maxBehindStreams), which a file whose own are read
			// again reaches.
			for i := range maxBehindStreams + 16 {
				text := append([]byte(fmt.Sprintf("block %d\n", i)), samples.Filler(3000)...)
				plain += len(text)
				data = append(data, c.part(t, text)...)
			}
			res, err := scanOne(t, s, tfile{name: "data/reads.bin", mode: 0o644, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if len(res.Findings) > 0 {
				t.Fatalf("findings %+v, want none", res.Findings)
			}
			if limit := int64(len(data) + plain + plain/4); res.Bytes > limit {
				t.Fatalf("scanned %d bytes for a file of %d holding %d, want at most %d", res.Bytes, len(data), plain, limit)
			}
		})
	}
	// A log that a program appends a gzip member to a line at a time:
	// many more members than streams behind a start are listed (one
	// per 2 KiB, 64 at least), none of them tried (outside attack round
	// 19's false block).
	var log []byte
	for i := range 300 {
		log = append(log, gzipBytes(t, fmt.Appendf(nil, "request %d served\n", i))...)
	}
	res, err := scanOne(t, s, tfile{name: "var/log/app.log.gz", mode: 0o644, data: log})
	if err != nil || len(res.Findings) > 0 {
		t.Fatalf("a log of 300 gzip members: %v, findings %+v, want none", err, res.Findings)
	}
}

func xzBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 1 << 16}.NewWriter(&buf) // xz's default, 8 MiB, is slow to set up
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A tar inside a file is read as GNU tar reads it: past a junk block
// between members, and past a header archive/tar refuses (a non-octal
// device number), whose body GNU tar writes out (outside attack round 19).
func TestTarReadPastABadHeader(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := samples.XMRig()
	first := tarLayer(t, reg("README", 0o644, "hello\n"))[:2*blockSize] // a header and its body, no end
	junk := bytes.Repeat([]byte("A"), blockSize)
	withMiner := tarLayer(t, tfile{name: "kworker", mode: 0o755, data: miner})
	badDev := tarLayer(t, reg("README", 0o644, "hello\n"), tfile{name: "kworker", mode: 0o755, data: miner})
	h := badDev[2*blockSize : 3*blockSize]
	copy(h[329:337], "zzzzzzz\x00") // devmajor
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	// A PAX header whose record is over 1 MiB: archive/tar's writer
	// will not write one, so its block is a regular file's made into one.
	record := "comment=" + strings.Repeat("c", 1<<20+100) + "\n"
	record = fmt.Sprintf("%d %s", len(record)+8, record)
	pax := tarLayer(t, reg("PaxHeaders/README", 0o644, record))
	pax = pax[:len(pax)-2*blockSize] // no end blocks
	pax[156] = tar.TypeXHeader
	copy(pax[148:156], "        ")
	paxSum := 0
	for _, c := range pax[:blockSize] {
		paxSum += int(c)
	}
	copy(pax[148:156], fmt.Sprintf("%06o\x00 ", paxSum))
	bigPAX := bytes.NewBuffer(append(pax, tarLayer(t, reg("README", 0o644, "hello\n"), tfile{name: "kworker", mode: 0o755, data: miner})...))
	for _, c := range []struct {
		name, want string
		tar        []byte
	}{
		{"a junk block between members", "/opt/app.tar.gz!kworker", bytes.Join([][]byte{first, junk, withMiner}, nil)},
		{"a PAX record over the 1 MiB archive/tar reads", "/opt/app.tar.gz!kworker", bigPAX.Bytes()},
		{"a member cut short", "/opt/app.tar.gz!kworker", cutShort(t, miner, 100<<10)},
		{"a member cut short, declared over the scan window", "/opt/app.tar.gz!kworker", cutShort(t, miner, 20<<20)},
		{"a non-octal device number", "/opt/app.tar.gz!kworker", badDev},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := gzipBytes(t, c.tar)
			dir := t.TempDir()
			f := filepath.Join(dir, "app.tar.gz")
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			exec.Command("tar", "xzf", f, "-C", dir).Run() // GNU tar exits 2 past the junk
			if got, _ := os.ReadFile(filepath.Join(dir, "kworker")); !bytes.HasPrefix(got, miner) {
				t.Fatal("GNU tar does not write the miner out: the case is wrong")
			}
			res, err := scanOne(t, s, tfile{name: "opt/app.tar.gz", mode: 0o644, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if !hasFinding(res.Findings, "MinerXMRig", c.want) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, c.want)
			}
		})
	}
}

// zipComment is z, a zip with no comment, with comment as its comment:
// unzip passes over it.
func zipComment(z, comment []byte) []byte {
	out := bytes.Clone(z)
	out[len(out)-2], out[len(out)-1] = byte(len(comment)), byte(len(comment)>>8)
	return append(out, comment...)
}

// skippable is data in a zstd skippable frame, which zstd -d passes over.
func skippable(data []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x184D2A50), uint32(len(data))), data...)
}

// zstdFrameStarts follows a zstd file's frames by their headers: those
// zstd writes (with and without a checksum, of one segment or not, RLE
// blocks), past skippable frames.
func TestZstdFrameStarts(t *testing.T) {
	var data []byte
	want := map[int64]bool{}
	for i, b := range [][]byte{
		zstdBytes(t, []byte("short")),
		skippable([]byte("passed over")),
		zstdBytes(t, bytes.Repeat([]byte("a"), 300000)), // RLE blocks, several
		zstdBytes(t, samples.Filler(200000)),            // raw blocks
		zstdBytes(t, nil),
	} {
		if i != 1 {
			want[int64(len(data))] = true
		}
		data = append(data, b...)
	}
	if got := zstdFrameStarts(data); !maps.Equal(got, want) {
		t.Fatalf("frames start at %v, want %v", got, want)
	}
	if got := zstdFrameStarts(data[:len(data)-3]); len(got) != len(want)-1 {
		t.Fatalf("cut inside its last frame: %v, want all but the last", got)
	}
}

// gzipExtraOf is plain, a gzip member with no extra field, with extra in
// its header's extra field (FEXTRA), which gzip -d passes over.
func gzipExtraOf(plain, extra []byte) []byte {
	out := append([]byte{}, plain[:10]...)
	out[3] |= 4
	out = binary.LittleEndian.AppendUint16(out, uint16(len(extra)))
	out = append(out, extra...)
	return append(out, plain[10:]...)
}

// first512 is a tar member of one block of body, with no end blocks.
func first512(t *testing.T) []byte {
	return tarLayer(t, reg("a", 0o644, "a\n"))[:2*blockSize]
}

// pad512 is b padded with zeros to whole tar blocks.
func pad512(b []byte) []byte {
	return append(bytes.Clone(b), make([]byte, (blockSize-len(b)%blockSize)%blockSize)...)
}

// cutShort is a tar of README and kworker, whose header declares miner
// followed by more bytes, cut where miner ends: GNU tar writes kworker out
// as far as it goes ("Unexpected EOF in archive").
func cutShort(t *testing.T, miner []byte, more int) []byte {
	body := pad512(miner) // tar writes whole blocks only
	whole := tarLayer(t, reg("README", 0o644, "hello\n"), tfile{name: "kworker", mode: 0o755, data: append(body, make([]byte, more)...)})
	return whole[:3*blockSize+len(body)]
}

// A later zstd frame, xz or bzip2 stream of a file's own whose output
// starts as a program is read on its own: tail -c | zstd -dc gives it
// alone, where a rule on a file's first bytes sees it, which it does not
// as the tail of the whole file's output.
func TestLaterFramesStartingAsAFileReadAlone(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	notes := []byte("release notes\n")
	for _, c := range []struct {
		tool, ext string
		enc       func([]byte) []byte
	}{
		{"zstd", "zst", func(b []byte) []byte { return zstdBytes(t, b) }},
		{"xz", "xz", func(b []byte) []byte { return cli(t, b, "xz", "-c") }},
		{"bzip2", "bz2", func(b []byte) []byte { return cli(t, b, "bzip2", "-c") }},
	} {
		t.Run(c.tool, func(t *testing.T) {
			first := c.enc(notes)
			data := append(bytes.Clone(first), c.enc(samples.XMRig())...)
			off := len(first)
			if got := hostCut(t, data, fmt.Sprintf("tail -c +%d $F | %s -dc", off+1, c.tool)); !bytes.Equal(got, samples.XMRig()) {
				t.Fatalf("tail -c | %s -dc does not give the miner: the case is wrong", c.tool)
			}
			if got := hostCut(t, data, c.tool+" -dc $F"); !bytes.Equal(got, append(bytes.Clone(notes), samples.XMRig()...)) {
				t.Fatalf("%s -dc does not give both: the case is wrong", c.tool)
			}
			res, err := scanOne(t, s, tfile{name: "opt/data." + c.ext, mode: 0o644, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if p := fmt.Sprintf("/opt/data.%s!%s@%d!%[2]s", c.ext, c.tool, off); !hasFinding(res.Findings, "MinerXMRig", p) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, p)
			}
		})
	}
}
