package scanner

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// A zip over the scan window has its own bytes searched as one in a
// window does (see unarchiveZipOwnBytes): a stream, a lone zip entry or
// base64 in its comment, which unzip passes over and tail -c cuts out.
func TestLargeZipOwnBytesSearched(t *testing.T) {
	big, limits := largeSizes()
	s := newTestScanner(t, Options{Workers: 2, Limits: limits})
	zipData := zipOf(t, tfile{name: "data.bin", mode: 0o644, data: samples.Filler(big)}, reg("notes.txt", 0o644, "notes\n"))
	lone := zipOf(t, tfile{name: "kworker", mode: 0o755, data: samples.XMRig()})
	lone = lone[:bytes.Index(lone, []byte("PK\x01\x02"))] // its local entry alone
	b64 := []byte(wrappedBase64(append(samples.XMRig(), samples.Filler(8<<10)...)))
	for _, c := range []struct {
		name, cut, want string
		comment         []byte
	}{
		{"gzip in its comment", "gzip -dc", "gzip@%d!gzip", gzipBytes(t, samples.XMRig())},
		{"a lone zip entry in its comment", "funzip", "zip@%d!kworker", lone},
		{"base64 in its comment", "base64 -d", "base64@%d", b64},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := zipComment(zipData, c.comment)
			off := len(zipData)
			if got := hostCut(t, data, fmt.Sprintf("tail -c +%d $F | %s 2>/dev/null", off+1, c.cut)); !bytes.HasPrefix(got, samples.XMRig()) {
				t.Fatalf("tail -c | %s does not give the miner: the case is wrong", c.cut)
			}
			if got := hostCut(t, data, "unzip -l $F"); !bytes.Contains(got, []byte("notes.txt")) {
				t.Fatalf("unzip -l lists %q: the case is wrong", got)
			}
			res, err := scanOne(t, s, tfile{name: "opt/app.zip", mode: 0o644, data: data})
			if err != nil {
				t.Fatalf("ScanLayer: %v", err)
			}
			// The comment's length, before it, may start a base64 chain.
			p := "/opt/app.zip!" + fmt.Sprintf(c.want, off)
			if !slices.ContainsFunc(res.Findings, func(f Finding) bool {
				return f.Rule == "MinerXMRig" && (f.Path == p || c.cut == "base64 -d" && strings.HasPrefix(f.Path, fmt.Sprintf("/opt/app.zip!base64@%d", off-1)))
			}) {
				t.Fatalf("findings %v: want MinerXMRig on %s", res.Findings, p)
			}
		})
	}
	t.Run("a member's own stream, not again", func(t *testing.T) {
		data := zipOf(t, tfile{name: "data.bin", mode: 0o644, data: samples.Filler(big)}, tfile{name: "m.gz", mode: 0o644, data: gzipBytes(t, samples.XMRig())})
		res, err := scanOne(t, s, tfile{name: "opt/app.zip", mode: 0o644, data: data})
		if err != nil {
			t.Fatalf("ScanLayer: %v", err)
		}
		var paths []string
		for _, f := range res.Findings {
			if !slices.Contains(paths, f.Path) {
				paths = append(paths, f.Path)
			}
		}
		if fmt.Sprint(paths) != "[/opt/app.zip!m.gz!m]" {
			t.Fatalf("findings %v: want them on /opt/app.zip!m.gz!m only", res.Findings)
		}
	})
}
