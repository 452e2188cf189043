package scanner

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/isal"
	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testsync"
)

// zipMember is one member of a test zip: its content, and the flate
// level it is deflated at (-100: stored).
type zipMember struct {
	name  string
	data  []byte
	level int
}

const storedLevel = -100

// memberData is compressible content of n bytes, different for each seed.
func memberData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"class ", "java/lang/Object ", "<init> ", "\x00\x01\x02", "META-INF/", "0123456789abcdef"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(8) == 0 {
			b.WriteByte(byte(r.Uint32()))
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

// buildZip writes members with compress/flate at each member's level.
func buildZip(t testing.TB, members []zipMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		level := m.level
		zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) { return flate.NewWriter(w, level) })
		method := zip.Deflate
		if m.level == storedLevel {
			method = zip.Store
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readMembers reads every member of zr whole, or the error archive/zip
// gives for it.
func readMembers(zr *zip.Reader) ([][]byte, []error) {
	out := make([][]byte, len(zr.File))
	errs := make([]error, len(zr.File))
	for i, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			errs[i] = err
			continue
		}
		out[i], errs[i] = io.ReadAll(rc)
		rc.Close()
	}
	return out, errs
}

// Thousands of members, empty to larger than the reader's buffers, at
// every flate level and stored, read through openZip (ISA-L) and through
// archive/zip's own decompressor: the same bytes, member by member.
func TestZipMembersThroughISALAsTheStandardLibrary(t *testing.T) {
	var members []zipMember
	levels := []int{storedLevel, flate.HuffmanOnly, flate.DefaultCompression, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	sizes := []int{0, 1, 2, 100, 700, 4 << 10, 33 << 10}
	for i := 0; i < 3000; i++ {
		n := sizes[i%len(sizes)] + i%97
		members = append(members, zipMember{fmt.Sprintf("m/%d.class", i), memberData(uint64(i), n), levels[i%len(levels)]})
	}
	for i, n := range []int{300 << 10, 1 << 20, 3 << 20} {
		members = append(members, zipMember{fmt.Sprintf("big/%d.bin", i), memberData(uint64(9000+i), n), []int{0, 6, 9}[i]})
	}
	blob := buildZip(t, members)

	zr, err := openZip(item{path: "/t.jar"}, bytes.NewReader(blob), int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	got, gotErrs := readMembers(zr)
	std, err := zip.NewReader(bytes.NewReader(blob), int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	want, wantErrs := readMembers(std)
	for i, m := range members {
		switch {
		case gotErrs[i] != nil || wantErrs[i] != nil:
			t.Fatalf("member %s: %v (standard: %v)", m.name, gotErrs[i], wantErrs[i])
		case !bytes.Equal(want[i], m.data):
			t.Fatalf("member %s: the standard reader does not give what was written", m.name)
		case !bytes.Equal(got[i], want[i]):
			t.Fatalf("member %s: %d bytes differ from the standard reader's %d", m.name, len(got[i]), len(want[i]))
		}
	}
	if f, ok := newInflater(bytes.NewReader(nil)).(*inflater); !ok {
		t.Fatalf("zip members are not inflated by ISA-L (%T)", f)
	} else {
		f.Close()
	}
}

// A member whose deflate stream is damaged, cut short or whose content
// does not match its CRC-32 is refused, as the standard decompressor
// refuses it, with archive/zip's or ISA-L's error, and the member after it
// reads whole.
func TestZipDamagedMembersThroughISAL(t *testing.T) {
	good := memberData(1, 50000)
	cases := []struct {
		name   string
		level  int
		damage func(b []byte) // b: the first member's deflate stream
		cut    uint64         // bytes its section loses at the end
		want   []error        // one of them
	}{
		{"changed deflate data", 6, func(b []byte) {
			for i := len(b) / 2; i < len(b)/2+8; i++ {
				b[i] ^= 0x5a
			}
		}, 0, []error{zip.ErrChecksum, zip.ErrFormat, io.ErrUnexpectedEOF, isal.ErrCorrupt}},
		{"content not its CRC-32", 0, func(b []byte) { b[100] ^= 1 }, 0, []error{zip.ErrChecksum}},
		{"stored block length", 0, func(b []byte) { b[1] ^= 0xff }, 0, []error{isal.ErrCorrupt}},
		{"stream cut short", 6, func([]byte) {}, 4, []error{io.ErrUnexpectedEOF}},
	}
	open := func(t *testing.T, blob []byte, cut uint64, ours bool) *zip.Reader {
		var zr *zip.Reader
		var err error
		if ours {
			zr, err = openZip(item{path: "/t.jar"}, bytes.NewReader(blob), int64(len(blob)))
		} else {
			zr, err = zip.NewReader(bytes.NewReader(blob), int64(len(blob)))
		}
		if err != nil {
			t.Fatal(err)
		}
		zr.File[0].CompressedSize64 -= cut
		return zr
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blob := buildZip(t, []zipMember{{"a", good, c.level}, {"b", []byte("after"), 6}})
			f := open(t, blob, 0, false).File[0]
			off, err := f.DataOffset()
			if err != nil {
				t.Fatal(err)
			}
			c.damage(blob[off : off+int64(f.CompressedSize64)])
			got, gotErrs := readMembers(open(t, blob, c.cut, true))
			_, wantErrs := readMembers(open(t, blob, c.cut, false))
			if gotErrs[0] == nil || wantErrs[0] == nil {
				t.Fatalf("damaged member: ours %v, standard %v: want both refused", gotErrs[0], wantErrs[0])
			}
			matched := false
			for _, want := range c.want {
				matched = matched || errors.Is(gotErrs[0], want)
			}
			if !matched {
				t.Fatalf("damaged member: %v, want one of %v", gotErrs[0], c.want)
			}
			if gotErrs[1] != nil || string(got[1]) != "after" {
				t.Fatalf("member after the damaged one: %q, %v", got[1], gotErrs[1])
			}
		})
	}
}

// A member's reader closed twice goes back to the pool once, and cannot be
// read once closed; the reader it held still inflates for the next member.
func TestZipInflaterClose(t *testing.T) {
	for inflaters.Get() != nil {
	}
	blob := memberData(3, 10000)
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 6)
	w.Write(blob)
	w.Close()
	f := newInflater(bytes.NewReader(b.Bytes())).(*inflater)
	z := f.z
	if _, err := io.ReadFull(f, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f.Close()
	if _, err := f.Read(make([]byte, 10)); !errors.Is(err, errInflaterClosed) {
		t.Fatalf("read after Close: %v, want errInflaterClosed", err)
	}
	var seen int
	for x := inflaters.Get(); x != nil; x = inflaters.Get() {
		if x == z {
			seen++
		}
	}
	if seen > 1 {
		t.Fatalf("a reader closed twice is in the pool %d times", seen)
	}
	if z.Reset(bytes.NewReader(b.Bytes())) != nil {
		t.Fatal("the pooled reader was closed")
	}
	got, err := io.ReadAll(z)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the reader after its member closed: %v", err)
	}
}

// Walkers read zips at once, each member through a pooled reader (the
// race detector watches the pool).
func TestZipInflatersConcurrent(t *testing.T) {
	var members []zipMember
	for i := 0; i < 300; i++ {
		members = append(members, zipMember{fmt.Sprintf("%d", i), memberData(uint64(i), 50+i*37), 6})
	}
	blob := buildZip(t, members)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zr, err := openZip(item{path: "/t.jar"}, bytes.NewReader(blob), int64(len(blob)))
			if err != nil {
				errs <- err
				return
			}
			got, gotErrs := readMembers(zr)
			for i := range members {
				if gotErrs[i] != nil || !bytes.Equal(got[i], members[i].data) {
					errs <- fmt.Errorf("member %d: %v", i, gotErrs[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// rawMember is a deflated member written as given: stream is its
// compressed bytes, data what its sizes and CRC-32 say it holds.
func rawMember(t *testing.T, zw *zip.Writer, name string, data, stream []byte) {
	t.Helper()
	fh := &zip.FileHeader{Name: name, Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(data),
		CompressedSize64: uint64(len(stream)), UncompressedSize64: uint64(len(data))}
	fh.SetMode(0o755)
	w, err := zw.CreateRaw(fh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(stream); err != nil {
		t.Fatal(err)
	}
}

// In a layer's zip, a member whose deflate stream ends before its section
// does is read and scanned; one whose stream is cut is reported
// unreadable, and the member after it is still scanned. (The scanner
// reads a member's declared size, so whether the reader also stops at
// the final block is held by the isal tests.)
func TestZipMembersThroughISALScanned(t *testing.T) {
	miner := samples.XMRig()
	plain := memberData(8, 20000)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	rawMember(t, zw, "tail/xmrig", miner, append(deflateBytes(t, miner), "bytes after the final block"...))
	rawMember(t, zw, "cut.txt", plain, deflateBytes(t, plain)[:1000])
	rawMember(t, zw, "after/xmrig", miner, deflateBytes(t, miner))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	s := newTestScanner(t, Options{Workers: 2})
	res, err := scanOne(t, s, tfile{name: "opt/a.zip", mode: 0o644, data: buf.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/opt/a.zip!tail/xmrig":  "MinerXMRig",
		"/opt/a.zip!cut.txt":     ArchiveUnreadableRule,
		"/opt/a.zip!after/xmrig": "MinerXMRig",
	}
	for _, f := range res.Findings {
		if want[f.Path] == f.Rule {
			delete(want, f.Path)
		} else if f.Rule == ArchiveUnreadableRule {
			t.Errorf("unexpected %+v", f)
		}
	}
	if len(want) > 0 {
		t.Fatalf("findings %+v lack %v", res.Findings, want)
	}
}

func deflateBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, 6)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Readers the pool drops on a GC free their C memory: the pool keeps no
// C memory that the heap does not.
func TestZipInflatersFreedWithThePool(t *testing.T) {
	stream := deflateBytes(t, memberData(4, 3000))
	var open []io.ReadCloser
	for i := 0; i < 8; i++ {
		rc := newInflater(bytes.NewReader(stream))
		if _, err := io.ReadAll(rc); err != nil {
			t.Fatal(err)
		}
		open = append(open, rc)
	}
	if isal.Live() < 8 {
		t.Fatalf("%d readers hold C memory, want at least the 8 open ones", isal.Live())
	}
	for _, rc := range open {
		rc.Close()
	}
	testsync.WaitFor(t, 30*time.Second, "every pooled reader's C memory freed", func() bool {
		runtime.GC()
		return isal.Live() == 0
	})
}
