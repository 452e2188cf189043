package proxy

import (
	"context"
	"crypto/rand"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// A verdict whose scan ran under rules that were replaced while it ran is
// never served as current: it is kept under the ruleset it was scanned
// under, and the blob is judged again under the new rules. Here the new
// rules refuse a layer the old ones passed, and they are loaded while the
// layer is streaming in, its scan already begun under the old rules.
func TestVerdictOfReplacedRulesIsNotServedAsCurrent(t *testing.T) {
	f := newFixture(t)
	noise := make([]byte, 6<<10)
	_, _ = rand.Read(noise) // incompressible: the layer takes seconds to stream
	img := testregistry.Image{Layers: [][]byte{testregistry.Layer(
		testregistry.File{Path: "var/noise", Data: noise},
		testregistry.File{Path: "etc/motd", Data: []byte("RULES-CHANGE-MARK")})}}
	f.hub.Push(t, "library/swap", "1", img)
	layer := digest.FromBytes(img.Layers[0])
	f.hub.Fault(layer, testregistry.Fault{BytesPerSecond: 2 << 10, Times: 1})

	type result struct {
		status int
		body   []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, body := f.do(t, "GET", "/v2/library/swap/manifests/1")
		done <- result{resp.StatusCode, body}
	}()
	testsync.WaitFor(t, 10*time.Second, "the layer's bytes to reach the scanner", func() bool {
		for _, fl := range f.srv.gate.Scans() {
			if fl.Digest == layer && fl.Bytes > 0 {
				return true
			}
		}
		return false
	})

	old := f.srv.gate.Scanner().RulesetID()
	rules := filepath.Join(t.TempDir(), "new.yar")
	writeRule(t, rules, `rule NewRule { meta: category = "miner" severity = "high" description = "new rule" strings: $a = "RULES-CHANGE-MARK" condition: $a }`)
	// The scan in flight keeps the rules it started under.
	sc := f.srv.gate.Scanner()
	if err := sc.Reload(scanner.Options{RulePaths: []string{rules}}); err != nil {
		t.Fatal(err)
	}

	r := <-done
	if r.status != http.StatusForbidden {
		t.Fatalf("after the rules changed mid-scan: %d %s", r.status, r.body)
	}
	if _, msg := ociError(t, r.body); !strings.Contains(msg, "NewRule") {
		t.Fatalf("message %q does not come from the new rules", msg)
	}
	ctx := context.Background()
	if v, err := f.store.Verdict(ctx, layer, old, storage.ContextLayer); err != nil || v.Status != storage.StatusClean {
		t.Errorf("the old rules' verdict is not kept under their ruleset: %+v %v", v, err)
	}
	if v, err := f.store.Verdict(ctx, layer, sc.RulesetID(), storage.ContextLayer); err != nil || v.Status != storage.StatusBlocked {
		t.Errorf("no verdict under the new rules: %+v %v", v, err)
	}
}

// An image is decided on verdicts all under the ruleset current when it
// decides. Here one layer's clean verdict is in under the old rules while
// another layer is still being fetched when new rules, which refuse the
// first layer, land: the image is refused under the new rules, not served
// on the old rules' verdict of the first layer.
func TestImageIsNotDecidedAcrossRulesets(t *testing.T) {
	f := newFixture(t)
	img := testregistry.Image{Layers: [][]byte{
		testregistry.Layer(testregistry.File{Path: "etc/first", Data: []byte("STRADDLE-MARK")}),
		testregistry.Layer(testregistry.File{Path: "etc/slow", Data: []byte("slow layer")}),
	}}
	f.hub.Push(t, "library/straddle", "1", img)
	first, slow := digest.FromBytes(img.Layers[0]), digest.FromBytes(img.Layers[1])
	release := make(chan struct{})
	f.hub.Fault(slow, testregistry.Fault{Block: release, Times: 1})

	type result struct {
		status int
		body   []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, body := f.do(t, "GET", "/v2/library/straddle/manifests/1")
		done <- result{resp.StatusCode, body}
	}()
	old := f.srv.gate.Scanner().RulesetID()
	testsync.WaitFor(t, 10*time.Second, "the first layer's clean verdict and the slow layer's ingest", func() bool {
		v, err := f.store.Verdict(context.Background(), first, old, storage.ContextLayer)
		if err != nil || v.Status != storage.StatusClean {
			return false
		}
		for _, fl := range f.srv.gate.Scans() {
			if fl.Digest == slow {
				return true
			}
		}
		return false
	})
	rules := filepath.Join(t.TempDir(), "straddle.yar")
	writeRule(t, rules, `rule StraddleRule { meta: category = "miner" severity = "high" description = "new rule" strings: $a = "STRADDLE-MARK" condition: $a }`)
	if err := f.srv.gate.Scanner().Reload(scanner.Options{RulePaths: []string{rules}}); err != nil {
		t.Fatal(err)
	}
	close(release)

	r := <-done
	if r.status != http.StatusForbidden {
		t.Fatalf("an image judged across a reload was answered %d: %s", r.status, r.body)
	}
	if _, msg := ociError(t, r.body); !strings.Contains(msg, "StraddleRule") {
		t.Fatalf("message %q does not come from the new rules", msg)
	}
}
