package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// New rules take effect without a restart: on SIGHUP the stored image is
// rescanned and refused from then on; a ruleset that does not compile is
// refused with its file:line, and the last good one stays in force.
func TestRulesReloadWithoutRestart(t *testing.T) {
	hub := testregistry.Start(t)
	hub.Push(t, "library/e2e-reload", "1", testregistry.CleanImage("reload"))
	rules := t.TempDir()
	writeTestFile(t, filepath.Join(rules, "site.yar"), `rule SiteNothing { meta: category = "miner" severity = "high" description = "matches nothing" condition: false }`)
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}, Extra: []string{"--rules", rules}})
	d := SharedDockerd(t, DockerdOptions{})
	ref := pg.Addr() + "/library/e2e-reload:1"
	if out, err := d.Pull(pullCtx(t), ref); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if err := d.RemoveImage(ref); err != nil {
		t.Fatal(err)
	}

	// The operator learns that this image's motd marks a bad build.
	writeTestFile(t, filepath.Join(rules, "site.yar"), `rule SiteBadBuild { meta: category = "miner" severity = "high" description = "site rule: bad build" strings: $a = "hello reload" condition: $a }`)
	before := len(pg.Log())
	if err := pg.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsync.WaitFor(t, 30*time.Second, "the rescan after the reload", func() bool { return strings.Contains(pg.Log()[before:], "rescan done") })
	if !strings.Contains(pg.Log()[before:], "refused=1") {
		t.Fatalf("the rescan did not refuse the stored layer:\n%s", tail(pg.Log(), 20))
	}
	out, err := d.Pull(pullCtx(t), ref)
	if err == nil || !strings.Contains(out, "SiteBadBuild") {
		t.Fatalf("after the reload the image should be refused by SiteBadBuild: %v\n%s", err, out)
	}

	// A broken rule file is refused; the last good rules stay.
	writeTestFile(t, filepath.Join(rules, "broken.yar"), "rule Broken {\n condition: $missing\n}\n")
	if err := pg.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testsync.WaitFor(t, 30*time.Second, "the failed reload to be logged", func() bool { return strings.Contains(pg.Log(), "rules reload failed") })
	if log := pg.Log(); !strings.Contains(log, "broken.yar:") || !strings.Contains(log, `undefined string \"$missing\"`) {
		t.Errorf("the failed reload does not say where:\n%s", tail(pg.Log(), 10))
	}
	if out, err := d.Pull(pullCtx(t), ref); err == nil || !strings.Contains(out, "SiteBadBuild") {
		t.Fatalf("the last good rules should still refuse the image: %v\n%s", err, out)
	}
}

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
