package proxy

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

func TestRulesetChangeRescansFromLocalStore(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("rescan")
	f.hub.Push(t, "library/rescan", "1", img)
	if resp, _ := f.do(t, "GET", "/v2/library/rescan/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("first pull")
	}
	// New rules that make the motd file a finding.
	f.newRules(t, "TestMotd", "hello rescan")

	resp, body := f.do(t, "GET", "/v2/library/rescan/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after new rules: %d %s", resp.StatusCode, body)
	}
	d := digest.FromBytes(img.Layers[0])
	if n := f.hub.CDNGets(d); n != 1 {
		t.Errorf("rescan fetched the layer again (%d): it should read the local copy", n)
	}
	if _, err := f.blobs.Stat(context.Background(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a layer now found bad is still in the store")
	}
}

func writeRule(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRescanUnderNewRulesRemovesWhatIsNowBad(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("retro")
	f.hub.Push(t, "library/retro", "1", img)
	if resp, _ := f.do(t, "GET", "/v2/library/retro/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("first pull")
	}
	f.newRules(t, "TestRetro", "hello retro")

	rep, err := f.srv.gate.Rescan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := digest.FromBytes(img.Layers[0])
	// Config and two layers were stored; all three are rescanned.
	if rep.Checked != 3 || rep.Scanned != 3 || rep.Failed != 0 || len(rep.Refused) != 1 || rep.Refused[0] != bad {
		t.Fatalf("report %+v", rep)
	}
	if _, err := f.blobs.Stat(context.Background(), bad); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("the now-bad layer is still stored")
	}
	if n := f.hub.CDNGets(bad); n != 1 {
		t.Fatalf("the rescan fetched from upstream (%d)", n)
	}
	// A second rescan finds nothing left to do.
	rep, err = f.srv.gate.Rescan(context.Background())
	if err != nil || rep.Scanned != 0 || rep.Checked != 2 {
		t.Fatalf("second rescan %+v %v", rep, err)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/retro/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("image served after its layer was found bad: %d", resp.StatusCode)
	}
}

// A layer found bad by a rescan is reported with the images that carry it
// and the clients the audit log says pulled them.
func TestRetroactiveBlockNamesWhoPulledIt(t *testing.T) {
	audit, err := storage.OpenFileAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.Admin.Audit = audit })
	img := testregistry.CleanImage("told")
	mdgst := f.hub.Push(t, "library/told", "1", img)
	if resp, _ := f.do(t, "GET", "/v2/library/told/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("first pull")
	}
	testsync.WaitFor(t, 10*time.Second, "the pull in the audit log", func() bool {
		recs, err := audit.Query(context.Background(), storage.AuditQuery{Digest: mdgst, Kind: storage.AuditPull})
		return err == nil && len(recs) == 1
	})
	f.newRules(t, "TestTold", "hello told")
	if _, err := f.srv.gate.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got *events.Event
	for _, ev := range f.srv.live.Recent(50) {
		if ev.Decision == verdict.RetroactiveBlock {
			got = &ev
			break
		}
	}
	if got == nil {
		t.Fatal("no retroactive-block event")
	}
	for _, want := range []string{"docker.io/library/told@" + mdgst.String(), "pulled before by 127.0.0.1", digest.FromBytes(img.Layers[0]).String()} {
		if !strings.Contains(got.Reason, want) {
			t.Errorf("reason %q lacks %q", got.Reason, want)
		}
	}
}

// newRules reloads the scanner's rules in place with one rule, name, that
// blocks any file containing needle: what an operator's new rules do to a
// cached image.
func (f *fixture) newRules(t *testing.T, name, needle string) {
	t.Helper()
	rule := filepath.Join(t.TempDir(), name+".yar")
	writeRule(t, rule, `rule `+name+` { meta: category = "miner" severity = "high" description = "test rule" strings: $a = "`+needle+`" condition: $a }`)
	if err := f.srv.gate.Scanner().Reload(scanner.Options{RulePaths: []string{rule}}); err != nil {
		t.Fatal(err)
	}
}
