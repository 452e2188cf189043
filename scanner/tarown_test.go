package scanner

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// rawHeader is a ustar header block for name, of type typ, announcing
// size bytes, its checksum set.
func rawHeader(name string, typ byte, size int) []byte {
	h := make([]byte, blockSize)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	sumHeader(h)
	return h
}

// sumHeader sets the checksum of h, a header block.
func sumHeader(h []byte) {
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
}

// tarEntry is a header of type typ and body, padded.
func tarEntry(name string, typ byte, body []byte) []byte {
	return append(rawHeader(name, typ, len(body)), pad512(body)...)
}

// paxRecord is one PAX record, "LEN key=value\n".
func paxRecord(key string, value []byte) []byte {
	rec := " " + key + "=" + string(value) + "\n"
	n := len(rec) + 1
	for len(fmt.Sprint(n))+len(rec) != n {
		n++
	}
	return []byte(fmt.Sprint(n) + rec)
}

var tarEnd = make([]byte, 2*blockSize)

// hostCut is what sh -c script writes, with $F the path of data.
func hostCut(t *testing.T, data []byte, script string) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "F="+f)
	out, _ := cmd.Output()
	return out
}

// straddling is a GNU long-name entry whose body ends in a gzip member's
// start, a stored block that takes in the padding and the header after
// it, followed by the member's rest as the next entry's body: gzip -dc
// of what tail -c cuts out at the member's start gives those blocks'
// bytes, then payload. It returns the tar's start and where the member
// starts in it.
func straddling(t *testing.T, payload []byte) ([]byte, int) {
	t.Helper()
	var rest bytes.Buffer
	fw, _ := flate.NewWriter(&rest, flate.BestCompression)
	fw.Write(payload)
	fw.Close()
	gzHead := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}
	lnBody := []byte("name\x00")
	start := blockSize + len(lnBody)
	// The stored block's content: from after its header to the end of
	// the next entry's header block.
	stored := 5
	storedLen := (blockSize - (len(lnBody)+len(gzHead)+stored)%blockSize) + blockSize
	bodyLen := rest.Len() + 8
	lnBody = append(lnBody, gzHead...)
	lnBody = append(lnBody, 0, byte(storedLen), byte(storedLen>>8), ^byte(storedLen), ^byte(storedLen>>8))
	out := append(rawHeader("././@LongLink", 'L', len(lnBody)), pad512(lnBody)...)
	out = append(out, rawHeader("ignored", '0', bodyLen)...)
	literal := out[len(out)-storedLen:]
	plain := append(bytes.Clone(literal), payload...)
	trailer := binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(plain))
	trailer = binary.LittleEndian.AppendUint32(trailer, uint32(len(plain)))
	out = append(out, pad512(append(rest.Bytes(), trailer...))...)
	return out, start
}

// gzipHeaderEntry is a tar entry whose header block starts with a gzip
// header, its extra field taking in the rest of the block, and whose body
// is the rest of the gzip member of payload: tar x writes the body out,
// and gzip -dc from the header's first byte gives payload (outside attack
// round 20).
func gzipHeaderEntry(payload []byte) []byte {
	var raw bytes.Buffer
	fw, _ := flate.NewWriter(&raw, flate.BestCompression)
	fw.Write(payload)
	fw.Close()
	body := binary.LittleEndian.AppendUint32(raw.Bytes(), crc32.ChecksumIEEE(payload))
	body = binary.LittleEndian.AppendUint32(body, uint32(len(payload)))
	h := rawHeader("", '0', len(body))
	copy(h, []byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, 0xf4, 0x01}) // XLEN 500
	sumHeader(h)
	return append(h, pad512(body)...)
}

// A tar's own bytes, outside its members' bodies, are searched, for
// tail -c to cut a stream out of them; in a tar read out of a .tar.gz
// they are scanned as bytes too.
func TestTarOwnBytesSearched(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := gzipBytes(t, samples.XMRig())
	dropper := gzipBytes(t, samples.Dropper())
	if len(dropper) > 500 {
		t.Fatalf("the dropper gzips to %d bytes: no padding holds it", len(dropper))
	}
	hello := tarEntry("hello.txt", '0', []byte("hello\n"))
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	pax := paxRecord("comment", miner)
	inPadding := append(rawHeader("a.txt", '0', 6), pad512(append([]byte("hello\n"), dropper...))...)
	var many [][]byte
	for i := range 20 {
		many = append(many, tarEntry(fmt.Sprintf("f%02d.bin", i), '0', samples.Filler(70<<10)))
	}
	manyBytes := join(many...)
	straddle, straddleAt := straddling(t, samples.Dropper())
	// Headers only, about ownFlush of them: the search after the next
	// file's entry stops short of the PAX record, which the next search
	// tries; more after it make that search one between entries too.
	var dirs [][]byte
	for i := range ownFlush/blockSize - 4 {
		dirs = append(dirs, rawHeader(fmt.Sprintf("d%05d/", i), '5', 0))
	}
	dirBytes := join(dirs...)
	for _, c := range []struct {
		name       string
		tar        []byte
		off        int
		rule, tool string
	}{
		{"a PAX record", join(tarEntry("PaxHeaders/a", 'x', pax), hello, tarEnd), blockSize + bytes.Index(pax, miner), "MinerXMRig", "gzip"},
		{"a GNU long name", join(tarEntry("././@LongLink", 'L', append([]byte("a\x00"), miner...)), hello, tarEnd), blockSize + 2, "MinerXMRig", "gzip"},
		{"a member's padding", join(inPadding, tarEnd), blockSize + 6, "MinerCommandLine", "gzip"},
		{"a PAX record after many members", join(manyBytes, tarEntry("PaxHeaders/a", 'x', pax), hello, tarEnd), len(manyBytes) + blockSize + bytes.Index(pax, miner), "MinerXMRig", "gzip"},
		{"a PAX record at the end of ownFlush of directories", join(dirBytes, tarEntry("PaxHeaders/a", 'x', pax), hello, tarEnd), len(dirBytes) + blockSize + bytes.Index(pax, miner), "MinerXMRig", "gzip"},
		{"a PAX record between ownFlush of directories and more", join(dirBytes, tarEntry("PaxHeaders/a", 'x', pax), hello, dirBytes, tarEnd), len(dirBytes) + blockSize + bytes.Index(pax, miner), "MinerXMRig", "gzip"},
		{"a gzip at the tar's first byte", join(gzipHeaderEntry(samples.XMRig()), hello, tarEnd), 0, "MinerXMRig", "gzip"},
		{"a gzip at a header's first byte", join(hello, gzipHeaderEntry(samples.XMRig()), tarEnd), 2 * blockSize, "MinerXMRig", "gzip"},
		{"a long name running into the body", join(straddle, tarEnd), straddleAt, "MinerCommandLine", "gzip"},
		{"base64 in a PAX record", join(tarEntry("PaxHeaders/a", 'x', paxRecord("comment", []byte(wrappedBase64(append(samples.XMRig(), samples.Filler(8<<10)...))))), hello, tarEnd), -1, "MinerXMRig", "base64"},
	} {
		off := c.off
		if off < 0 {
			off = bytes.Index(c.tar, []byte("comment=")) + len("comment=")
		}
		t.Run(c.name, func(t *testing.T) {
			want := samples.XMRig()
			if c.rule == "MinerCommandLine" {
				want = samples.Dropper()
			}
			cut := fmt.Sprintf("tail -c +%d | %s -d", off+1, c.tool)
			if got := hostCut(t, c.tar, "< $F "+cut); !bytes.Contains(got, want) {
				t.Fatalf("%s does not give the sample: the case is wrong", cut)
			}
			if got := hostCut(t, c.tar, "tar tf $F"); len(got) == 0 {
				t.Fatal("tar tf lists nothing: the case is wrong")
			}
			name := fmt.Sprintf("%s@%d", c.tool, off)
			if c.tool == "gzip" {
				name += "!gzip"
			}
			res, err := scanOne(t, s, tfile{name: "opt/x.tar", mode: 0o644, data: c.tar})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if p := "/opt/x.tar!" + name; !hasFinding(res.Findings, c.rule, p) {
				t.Fatalf("findings %v: want %s on %s", res.Findings, c.rule, p)
			}
			gz := gzipBytes(t, c.tar)
			if got := hostCut(t, gz, "gzip -dc $F | "+cut); !bytes.Contains(got, want) {
				t.Fatalf("gzip -dc | %s does not give the sample: the case is wrong", cut)
			}
			res, err = scanOne(t, s, tfile{name: "opt/x.tar.gz", mode: 0o644, data: gz})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if p := "/opt/x.tar.gz!x.tar!" + name; !hasFinding(res.Findings, c.rule, p) {
				t.Fatalf("findings %v: want %s on %s", res.Findings, c.rule, p)
			}
		})
	}
}

// A tar over the scan window, read in windows, has its own bytes searched
// too.
func TestTarOwnBytesSearchedInALargeTar(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	pax := paxRecord("comment", gzipBytes(t, samples.XMRig()))
	head := tarEntry("data.bin", '0', samples.Filler(big))
	tarData := bytes.Join([][]byte{head, tarEntry("PaxHeaders/a", 'x', pax), tarEntry("a.txt", '0', []byte("hello\n")), tarEnd}, nil)
	off := len(head) + blockSize + bytes.Index(pax, gzipBytes(t, samples.XMRig()))
	if got := hostCut(t, tarData, fmt.Sprintf("tail -c +%d $F | gzip -dc", off+1)); !bytes.Equal(got, samples.XMRig()) {
		t.Fatal("tail -c | gzip -dc does not give the miner: the case is wrong")
	}
	res, err := scanOne(t, s, tfile{name: "opt/x.tar", mode: 0o644, data: tarData})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	if p := fmt.Sprintf("/opt/x.tar!gzip@%d!gzip", off); !hasFinding(res.Findings, "MinerXMRig", p) {
		t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, p)
	}
}

// In a tar read out of a .tar.gz, a script in a PAX record is scanned as
// bytes (a tar in a file was scanned whole already).
func TestTarOwnBytesScannedInACompressedTar(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	tarData := bytes.Join([][]byte{tarEntry("PaxHeaders/a", 'x', paxRecord("comment", samples.Dropper())), tarEntry("a.txt", '0', []byte("hello\n")), tarEnd}, nil)
	res, err := scanOne(t, s, tfile{name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, tarData)})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	if !hasFinding(res.Findings, "MinerCommandLine", "/opt/x.tar.gz!x.tar") {
		t.Fatalf("findings %v: want MinerCommandLine on /opt/x.tar.gz!x.tar", res.Findings)
	}
}

// What a member's body holds is the member's, found under its name and
// not again under the tar; a tar of PAX records, long names and many
// members, none holding anything, gives no finding.
func TestTarOwnBytesKeptOut(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	miner := gzipBytes(t, samples.XMRig())
	long := strings.Repeat("d/", 80) + "notes.txt"
	var members []tfile
	for i := range 100 {
		members = append(members, tfile{name: fmt.Sprintf("%s%03d", long, i), mode: 0o644, data: samples.Filler(1000 + 97*i)})
	}
	benign := tarLayer(t, members...)
	inBody := tarLayer(t, tfile{name: "m.gz", mode: 0o644, data: miner}, tfile{name: "n.txt", mode: 0o644, data: []byte("n\n")})
	for _, c := range []struct {
		name string
		file tfile
		want []string // findings' paths, in any order
	}{
		{"benign tar", tfile{name: "opt/x.tar", mode: 0o644, data: benign}, nil},
		{"benign tar.gz", tfile{name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, benign)}, nil},
		{"a gzip member", tfile{name: "opt/x.tar", mode: 0o644, data: inBody}, []string{"/opt/x.tar!m.gz!m"}},
		{"a gzip member of a tar.gz", tfile{name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, inBody)}, []string{"/opt/x.tar.gz!m.gz!m"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := scanOne(t, s, c.file)
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			var got []string
			for _, f := range res.Findings {
				if !slices.Contains(got, f.Path) {
					got = append(got, f.Path)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("findings %v: want them on %v only", res.Findings, c.want)
			}
		})
	}
}

// archive/tar reads any number of PAX headers before an entry, and the
// tar's own bytes are kept whole between entries: past ownMax the walk
// stops, and the file is refused.
func TestTarOwnBytesBounded(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	var parts [][]byte
	for range (ownFlush+ownMax)/1_000_000 + 2 {
		parts = append(parts, tarEntry("PaxHeaders/a", 'x', paxRecord("comment", bytes.Repeat([]byte("x"), 1_000_000))))
	}
	parts = append(parts, tarEntry("a.txt", '0', []byte("hello\n")), tarEnd)
	res, err := scanOne(t, s, tfile{name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, bytes.Join(parts, nil))})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	for _, f := range res.Findings {
		if f.Rule == ArchiveUnreadableRule && f.Severity == SeverityHigh && f.Path == "/opt/x.tar.gz" && strings.Contains(f.Description, "tar headers run on") {
			return
		}
	}
	t.Fatalf("findings %v: want a high ArchiveUnreadable on /opt/x.tar.gz, its headers too long", res.Findings)
}

// spanningEntries is a tar of n directory headers with a gzip stream that
// starts in the name field of header a and takes the next 192 KiB of
// headers in as stored blocks, its last block and trailer in a later
// header's prefix field: tail -c | gzip -dc gives those headers' bytes,
// then payload (outside attack round 20, F4). It returns the tar and
// where the stream starts.
func spanningEntries(n, a int, payload []byte) ([]byte, int) {
	tarData := make([]byte, 0, n*blockSize)
	for i := range n {
		tarData = append(tarData, rawHeader(fmt.Sprintf("d%06d/", i), '5', 0)...)
	}
	start := a*blockSize + 20
	pos := start + copy(tarData[start:], []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3})
	var raw bytes.Buffer
	fw, _ := flate.NewWriter(&raw, flate.BestCompression)
	fw.Write(payload)
	fw.Close()
	type block struct{ at, n int }
	var stored []block
	for k := range 3 {
		n := 65531
		if k == 2 {
			n = ((pos+5+60000)/blockSize+1)*blockSize + 345 - (pos + 5)
		}
		stored = append(stored, block{pos + 5, n})
		copy(tarData[pos:], []byte{0, byte(n), byte(n >> 8), ^byte(n), ^byte(n >> 8)})
		pos += 5 + n
	}
	trailer := pos + copy(tarData[pos:], raw.Bytes())
	// The trailer's block keeps the same byte sum whatever the trailer
	// holds, so that its checksum does not depend on the CRC.
	balance := func() {
		b := trailer / blockSize * blockSize
		c := 2040
		for _, v := range tarData[trailer : trailer+8] {
			c -= int(v)
		}
		for i := range 12 {
			v := min(255, c)
			tarData[b+500+i] = byte(v)
			c -= v
		}
	}
	checksums := func() {
		for b := 0; b < len(tarData); b += blockSize {
			h := tarData[b : b+blockSize]
			copy(h[148:], "        ")
			sum := 0
			for _, c := range h {
				sum += int(c)
			}
			copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
		}
	}
	balance()
	checksums()
	var out []byte
	for _, s := range stored {
		out = append(out, tarData[s.at:s.at+s.n]...)
	}
	out = append(out, payload...)
	binary.LittleEndian.PutUint32(tarData[trailer:], crc32.ChecksumIEEE(out))
	binary.LittleEndian.PutUint32(tarData[trailer+4:], uint32(len(out)))
	balance()
	checksums()
	return append(tarData, tarEnd...), start
}

// A stream in a tar's own bytes that runs on past what is kept to read
// it (64 KiB of a member's body, or of the headers after a search's
// stop) cannot be read whole: the tar is refused (outside attack round
// 20, F3 and F4).
func TestTarOwnBytesCutRefused(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	// Short enough for a header's prefix field.
	line := []byte("\n./x --donate-level 1 -o stratum+tcp://pool.example.invalid:3\n")
	intoBody, intoBodyAt := straddling(t, append(samples.Filler(96<<10), samples.Dropper()...))
	across, acrossAt := spanningEntries(6000, 1800, line)
	for _, c := range []struct {
		name    string
		tar     []byte
		off     int
		payload []byte
	}{
		{"into a body past 64 KiB", append(intoBody, tarEnd...), intoBodyAt, samples.Dropper()},
		{"across a search's stop", across, acrossAt, line},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := hostCut(t, c.tar, fmt.Sprintf("tail -c +%d $F | gzip -dc 2>/dev/null", c.off+1)); !bytes.HasSuffix(got, c.payload) {
				t.Fatal("tail -c | gzip -dc does not give the payload: the case is wrong")
			}
			if got := hostCut(t, c.tar, "tar tf $F >/dev/null && echo ok"); string(got) != "ok\n" {
				t.Fatal("tar tf fails: the case is wrong")
			}
			for _, f := range []tfile{{name: "opt/x.tar", mode: 0o644, data: c.tar}, {name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, c.tar)}} {
				res, err := scanOne(t, s, f)
				if err != nil {
					t.Fatalf("ScanLayer: %v", err)
				}
				if !slices.ContainsFunc(res.Findings, func(f Finding) bool {
					return f.Rule == ArchiveUnreadableRule && f.Severity == SeverityHigh && strings.Contains(f.Description, "runs on past")
				}) {
					t.Fatalf("%s: findings %v: want a high ArchiveUnreadable, the stream cut", f.name, res.Findings)
				}
			}
		})
	}
}

// A sparse member's fragments lie back to back in the tar, and a stream
// across two of them is cut out whole by tail -c, where the member
// unpacked has a hole in it: a sparse member's body is searched as the
// tar's own bytes (outside attack round 20, F5).
func TestTarSparseFragmentsSearched(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	gz := gzipBytes(t, samples.Dropper())
	lead := 1024 - len(gz)/2
	body := append(append(bytes.Repeat([]byte("a"), lead), gz...), bytes.Repeat([]byte("x"), 2048-lead-len(gz))...)
	h := rawHeader("sp", 'S', len(body))
	copy(h[257:], "ustar  \x00") // GNU's magic
	for i, f := range [][2]int{{0, 1024}, {1 << 20, 1024}} {
		copy(h[386+24*i:], fmt.Sprintf("%011o\x00%011o\x00", f[0], f[1]))
	}
	copy(h[483:], fmt.Sprintf("%011o\x00", 1<<20+1024))
	sumHeader(h)
	hello := tarEntry("hello.txt", '0', []byte("hello\n"))
	tarData := bytes.Join([][]byte{hello, h, pad512(body), tarEnd}, nil)
	off := len(hello) + blockSize + lead
	if got := hostCut(t, tarData, fmt.Sprintf("tail -c +%d $F | gzip -dc 2>/dev/null", off+1)); !bytes.Equal(got, samples.Dropper()) {
		t.Fatal("tail -c | gzip -dc does not give the dropper: the case is wrong")
	}
	if got := hostCut(t, tarData, "tar tvf $F"); !bytes.Contains(got, []byte("1049600")) {
		t.Fatalf("tar tvf lists %q, not a sparse file: the case is wrong", got)
	}
	for _, f := range []tfile{{name: "opt/x.tar", mode: 0o644, data: tarData}, {name: "opt/x.tar.gz", mode: 0o644, data: gzipBytes(t, tarData)}} {
		res, err := scanOne(t, s, f)
		if err != nil {
			t.Fatalf("ScanLayer: %v", err)
		}
		p := fmt.Sprintf("/%s!gzip@%d!gzip", f.name, off)
		if f.name == "opt/x.tar.gz" {
			p = fmt.Sprintf("/opt/x.tar.gz!x.tar!gzip@%d!gzip", off)
		}
		if !hasFinding(res.Findings, "MinerCommandLine", p) {
			t.Fatalf("findings %v: want MinerCommandLine on %s", res.Findings, p)
		}
	}
}

// A sparse member whose fragments hold more than a tar's headers may
// (ownMax) is served: its fragments are spooled, not kept (round 20b,
// FB1).
func TestTarLargeSparseMemberServed(t *testing.T) {
	if raceEnabled {
		t.Skip("17 MiB through the race detector is slow; TestTarSparseFragmentsSearched covers the search")
	}
	s := newTestScanner(t, Options{Workers: 2})
	body := samples.Filler(ownMax + 1<<20)
	h := rawHeader("db", 'S', len(body))
	copy(h[257:], "ustar  \x00")
	copy(h[386:], fmt.Sprintf("%011o\x00%011o\x00", 0, len(body)))
	copy(h[483:], fmt.Sprintf("%011o\x00", len(body)+1<<20))
	sumHeader(h)
	tarData := slices.Concat(h, pad512(body), tarEnd)
	res, err := scanOne(t, s, tfile{name: "opt/x.tar", mode: 0o644, data: tarData})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	if len(res.Findings) > 0 {
		t.Fatalf("findings %v: want none", res.Findings)
	}
}
