package scanner

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// paddedInstaller is a script that unpacks what follows its own lines
// with tail, its lines padded with comments so that what it unpacks
// starts at off (at least where the lines end).
func paddedInstaller(off int, archive []byte, unpack string) []byte {
	head := fmt.Sprintf("#!/bin/sh\ntail -c +%010d \"$0\" | %s\nexit 0\n", off+1, unpack)
	b := []byte(head)
	for len(b) < off {
		line := min(off-len(b), 72)
		b = append(b, "#"...)
		b = append(b, bytes.Repeat([]byte("-"), line-2)...)
		b = append(b, '\n')
	}
	return append(b, archive...)
}

// wrappedBase64 is payload in base64, in lines of 76 characters.
func wrappedBase64(payload []byte) string {
	enc := base64.StdEncoding.EncodeToString(payload)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	return b.String() + enc + "\n"
}

// A file larger than the scan window is looked into behind its start as
// one in a window is: padding a self-extractor past the window, or
// putting its stream across the boundary of two of the chunks it is read
// back in, hides nothing.
func TestLargeFilesSearchedBehindTheirStart(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	w := int(s.limits.Window)
	miner := tfile{name: "xmrig-6.21.0/xmrig", mode: 0o755, data: samples.XMRig()}
	tgz := tarGz(t, xmrigRelease()...)
	type tcase struct {
		name   string
		data   []byte
		within string // the finding's path starts with /tmp/install.sh and this
	}
	cases := []tcase{
		{"makeself whose archive runs past the window", paddedInstaller(0, tarGz(t, pad(big), miner), "tar xz"), "!gzip@"},
		{"a stream after a window of script", paddedInstaller(big, tgz, "tar xz"), fmt.Sprintf("!gzip@%d!", big)},
		{"xz after a window of script", paddedInstaller(big, cli(t, tarLayer(t, xmrigRelease()...), "xz", "-c"), "tar xJ"), fmt.Sprintf("!xz@%d!", big)},
		{"zstd after a window of script", paddedInstaller(big, zstdBytes(t, tarLayer(t, xmrigRelease()...)), "zstd -dc | tar x"), fmt.Sprintf("!zstd@%d!", big)},
		{"appended to a large program", append(append(samples.ELF("a helper"), samples.Filler(big)...), tgz...), "!gzip@"},
		{"a zip entry with no directory after a window of script", paddedInstaller(big, zipLocalOnly([]byte(samples.KinsingDropper()), 8), "funzip | sh"), fmt.Sprintf("!zip@%d!", big)},
		{"a zip at the end of a large script", paddedInstaller(big, zipOf(t, xmrigRelease()...), "true"), "!xmrig-6.21.0/xmrig"},
		{"base64 after a window of script", []byte(string(paddedInstaller(big, nil, "true")) + "base64 -d <<'EOF' | tar xz -C /tmp\n" + wrappedBase64(tgz) + "EOF\n"), "!base64@"},
		{"base64 longer than a window", []byte("#!/bin/sh\nbase64 -d <<'EOF' | tar xz -C /tmp\n" + wrappedBase64(tarGz(t, pad(big), miner)) + "EOF\n"), "!base64@"},
		{"base64 across two chunks", []byte(string(paddedInstaller(w-windowOverlap-1000, nil, "true")) + wrappedBase64(tarGz(t, pad(2*windowOverlap), miner))), "!base64@"},
	}
	// The stream starting on either side of where one chunk's candidates
	// end and the next's begin, and with its header across a chunk's end.
	for _, off := range []int{w - windowOverlap - 1, w - windowOverlap, w - windowOverlap + 1, w - 5, w + 3} {
		data := append(paddedInstaller(off, tgz, "tar xz"), samples.Filler(2*windowOverlap)...)
		cases = append(cases, tcase{fmt.Sprintf("a stream at %d", off), data, fmt.Sprintf("!gzip@%d!", off)})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.data) <= w {
				t.Fatalf("the file is %d bytes, not larger than the window", len(c.data))
			}
			res, err := scanOne(t, s, tfile{name: "tmp/install.sh", mode: 0o755, data: c.data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			found := false
			for _, f := range res.Findings {
				found = found || f.Severity == SeverityHigh && (f.Rule == "MinerXMRig" || f.Rule == "KinsingDropper") &&
					strings.HasPrefix(f.Path, "/tmp/install.sh"+c.within[:1]) && strings.Contains(f.Path, c.within)
			}
			if !found {
				t.Fatalf("findings %v: want the payload found inside /tmp/install.sh%s…", res.Findings, c.within)
			}
			if d := DefaultPolicy().Decide(res.Findings); !d.Blocked {
				t.Errorf("not blocked: %+v", res.Findings)
			}
		})
	}
}

// The script a large installer is unpacks what pullgate reads in it: the
// ground truth for the padded form.
func TestLargeInstallerUnpacks(t *testing.T) {
	big, _ := largeSizes()
	dir := t.TempDir()
	script := filepath.Join(dir, "install.sh")
	data := paddedInstaller(big, tarGz(t, xmrigRelease()...), "tar xz -C "+filepath.Join(dir, "out"))
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", script).CombinedOutput(); err != nil {
		t.Fatalf("the script does not unpack itself: %v: %s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "out/xmrig-6.21.0/xmrig")); !bytes.Equal(got, samples.XMRig()) {
		t.Fatal("the script unpacked something else than the miner")
	}
}

// Large files with nothing behind their start, or only what looks like a
// stream's first bytes, give no finding.
func TestLargeFilesBehindTheirStartKeptOut(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	fake := append(append([]byte{}, gzipMagic...), 8, 0, 0, 0, 0, 0, 0, 3, 'n', 'o', 't', ' ', 'a', ' ', 's', 't', 'r', 'e', 'a', 'm')
	benign := tarGz(t, reg("README", 0o644, "nothing to see\n"))
	cases := map[string][]byte{
		"a large program":                        append(samples.ELF("a helper"), samples.Filler(big)...),
		"a large script":                         paddedInstaller(big, []byte("echo done\n"), "true"),
		"a gzip header that is no stream":        paddedInstaller(big, fake, "true"),
		"a benign archive behind a large script": paddedInstaller(big, benign, "tar xz"),
		"base64 of filler in a large script":     []byte(string(paddedInstaller(big, nil, "true")) + wrappedBase64(samples.Filler(20000))),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := scanOne(t, s, tfile{name: "opt/app/run", mode: 0o755, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			if len(res.Findings) > 0 {
				t.Fatalf("findings %+v, want none", res.Findings)
			}
		})
	}
}

// A run of gzip members behind a prefix is read once, from its first
// member on, as gzip -dc reads it, not once more from each member; a
// member whose output the stream before it did not read whole is read
// on its own.
func TestGzipMembersBehindAPrefixReadOnce(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	var members []byte
	plain := 0
	for i := range 300 {
		text := append([]byte(fmt.Sprintf("resource %d\n", i)), samples.Filler(2100)...)
		plain += len(text)
		members = append(members, gzipBytes(t, text)...)
	}
	data := paddedInstaller(0, members, "gzip -dc")
	res, err := scanOne(t, s, tfile{name: "opt/app/resources", mode: 0o644, data: data})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	if len(res.Findings) > 0 {
		t.Fatalf("findings %+v, want none", res.Findings)
	}
	if limit := int64(len(data) + 4*plain); res.Bytes > limit {
		t.Fatalf("scanned %d bytes for a file of %d holding %d, want at most %d", res.Bytes, len(data), plain, limit)
	}

	// A tar that stops being one in the next member: the walk of the
	// first stops there, and the next member is read on its own.
	tarHead := tarLayer(t, reg("notes.txt", 0o644, strings.Repeat("a", 100)))
	tarHead = tarHead[:1024] // its header and body, no end
	dropper := gzipBytes(t, samples.XMRig())
	first := gzipBytes(t, tarHead)
	data = paddedInstaller(0, append(first, dropper...), "gzip -dc | tar x")
	res, err = scanOne(t, s, tfile{name: "tmp/install.sh", mode: 0o755, data: data})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	off := bytes.Index(data, first) + len(first)
	if want := fmt.Sprintf("/tmp/install.sh!gzip@%d!gzip", off); !hasFinding(res.Findings, "MinerXMRig", want) {
		t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, want)
	}
}

// A large file is scanned whole, not window by window: a rule's strings
// placed more than a window apart still match together.
func TestLargeFileStringsAWindowApart(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	// XMRig's option and algorithm names, none enough on its own.
	parts := []string{"donate-over-proxy", "huge-pages-jit", "max-threads-hint", "rx/wow"}
	data := samples.ELF(parts[0])
	for _, p := range parts[1:] {
		data = append(append(data, samples.Filler(big)...), p...)
	}
	res, err := scanOne(t, s, tfile{name: "opt/x/helper", mode: 0o755, data: data})
	if err != nil {
		t.Fatalf("ScanLayer: %v", err)
	}
	if !hasFinding(res.Findings, "MinerXMRigInternals", "/opt/x/helper") {
		t.Fatalf("findings %v: want MinerXMRigInternals on /opt/x/helper", res.Findings)
	}
	for i := range parts {
		res, err := scanOne(t, s, tfile{name: "opt/x/helper", mode: 0o755, data: samples.ELF(parts[i])})
		if err != nil || len(res.Findings) > 0 {
			t.Fatalf("%q alone: findings %v, %v; want none", parts[i], res.Findings, err)
		}
	}
}

// Base64 in a file larger than the scan window is read in the shapes a
// smaller file's is, and a run longer than a window in the shapes its
// decoders take: after a marker line (at any alignment), tab-indented in
// a here-document, in separately padded lines, in lines joined by
// spaces, in quoted pieces one a line, and in a JSON value's escapes.
func TestLargeFileBase64Shapes(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	miner := tfile{name: "xmrig-6.21.0/xmrig", mode: 0o755, data: samples.XMRig()}
	small := tarGz(t, xmrigRelease()...)
	long := tarGz(t, pad(big), miner)
	lines := func(payload []byte, width int, sep, prefix, suffix string) string {
		enc := base64.StdEncoding.EncodeToString(payload)
		var b strings.Builder
		for len(enc) > 0 {
			n := min(width, len(enc))
			b.WriteString(prefix + enc[:n] + suffix + sep)
			enc = enc[n:]
		}
		return b.String()
	}
	padded := func(payload []byte) string {
		var b strings.Builder
		for len(payload) > 0 {
			n := min(55, len(payload))
			b.WriteString(base64.StdEncoding.EncodeToString(payload[:n]) + "\n")
			payload = payload[n:]
		}
		return b.String()
	}
	head := string(paddedInstaller(big, nil, "true"))
	cases := map[string]string{
		"a marker line before a block":                 head + "BEGIN\n" + wrappedBase64(small) + "__END__\n",
		"a marker line before a block after padding":   head + "PAYLOAD\n" + wrappedBase64(small),
		"a marker line before a block over a window":   "#!/bin/sh\nABC\n" + wrappedBase64(long) + "__END__\n",
		"a here-document with tabs, over a window":     "#!/bin/sh\nbase64 -d <<-EOF | tar xz\n" + lines(long, 76, "\n", "\t", "") + "\tEOF\n",
		"separately padded lines, over a window":       "#!/bin/sh\n" + padded(long),
		"lines joined by spaces, over a window":        "#!/bin/sh\n" + lines(long, 76, " ", "", "") + "\n",
		"quoted pieces one a line, over a window":      "data = (\n" + lines(long, 76, "\n", "    \"", "\"") + ")\n",
		"a JSON value with \\n escapes, over a window": "{\"name\": \"x\", \"data\": \"" + lines(long, 76, "\\n", "", "") + "\"}\n",
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			if len(text) <= int(s.limits.Window) {
				t.Fatalf("the file is %d bytes, not larger than the window", len(text))
			}
			res, err := scanOne(t, s, tfile{name: "opt/app/data", mode: 0o644, data: []byte(text)})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			found := false
			for _, f := range res.Findings {
				found = found || f.Rule == "MinerXMRig" && strings.HasPrefix(f.Path, "/opt/app/data!base64@")
			}
			if !found {
				t.Fatalf("findings %v: want MinerXMRig inside a base64 payload", res.Findings)
			}
		})
	}
}

// Bytes crafted to start like a stream every few bytes are tried up to
// maxTrials, and the file is refused past it, in a window or spooled.
func TestStreamTrialsCapped(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	fake := append(append([]byte{}, gzipMagic...), 8, 0, 0, 0, 0, 0, 0, 3, 'x', 'x', 'x', 'x', 'x')
	for _, size := range []int{256 << 10, big + int(s.limits.Window)} {
		data := []byte("#!/bin/sh\n")
		for len(data) < size {
			data = append(data, fake...)
		}
		res, err := scanOne(t, s, tfile{name: "opt/app/run", mode: 0o755, data: data})
		if err != nil {
			t.Fatalf("ScanLayer: %v", err)
		}
		if !hasFinding(res.Findings, ArchiveUnreadableRule, "/opt/app/run") || !strings.Contains(res.Findings[0].Description, "tried") {
			t.Fatalf("%d bytes: findings %v, want the file refused for its candidates", size, res.Findings)
		}
	}
	// Go's crc32_table_ppc64le.s, with a zlib header in each of its
	// 1,722 "x^", is tried whole and passes.
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "src/hash/crc32/crc32_table_ppc64le.s"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(text, []byte("x^")); n < 1000 {
		t.Fatalf("the table holds %d formulas, not the file expected", n)
	}
	res, err := scanOne(t, s, tfile{name: "src/crc32_table.s", mode: 0o644, data: text})
	if err != nil || len(res.Findings) > 0 {
		t.Fatalf("formulas: findings %v, %v; want none", res.Findings, err)
	}
}

// A zip entry behind a file's start that the zip at its end does not
// list is read too, in a window or spooled: funzip writes it out.
func TestZipEntryBeforeAZipAtTheEnd(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	entry := zipLocalOnly([]byte(samples.KinsingDropper()), 8)
	benign := zipOf(t, reg("README", 0o644, "nothing to see\n"))
	for _, pad := range []int{0, big} {
		data := append(paddedInstaller(pad, entry, "funzip | sh"), benign...)
		off := len(data) - len(benign) - len(entry)
		res, err := scanOne(t, s, tfile{name: "tmp/install.sh", mode: 0o755, data: data})
		if err != nil {
			t.Fatalf("ScanLayer: %v", err)
		}
		if want := fmt.Sprintf("/tmp/install.sh!zip@%d!x", off); !hasFinding(res.Findings, "KinsingDropper", want) {
			t.Fatalf("%d bytes: findings %v, want KinsingDropper on %s", len(data), res.Findings, want)
		}
		// The end zip's own entry is read once, as it lists it.
		for _, f := range res.Findings {
			if strings.Contains(f.Path, "README") {
				t.Fatalf("finding on the benign zip's entry: %+v", f)
			}
		}
	}
}
