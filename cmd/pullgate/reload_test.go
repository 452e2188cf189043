package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pullgate/pullgate/scanner"
)

// A change to a rule file on disk (edited, added, removed) changes the
// fingerprint the reloader polls; an untouched tree does not.
func TestRulesFingerprintSeesChangesOnDisk(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "site.yar")
	writeFile(t, file, "rule A { condition: false }\n")
	fp := func() string { return rulesFingerprint([]string{dir}) }
	first := fp()
	if fp() != first {
		t.Fatal("the fingerprint of an untouched tree changed")
	}

	writeFile(t, file, "rule A { condition: true }\n")
	// Same size, so only the time can tell; make sure it moves.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	edited := fp()
	if edited == first {
		t.Fatal("an edited rule file was not noticed")
	}

	writeFile(t, filepath.Join(dir, "more.yar"), "rule B { condition: false }\n")
	added := fp()
	if added == edited {
		t.Fatal("a new rule file was not noticed")
	}
	if err := os.Remove(filepath.Join(dir, "more.yar")); err != nil {
		t.Fatal(err)
	}
	if fp() == added {
		t.Fatal("a removed rule file was not noticed")
	}
}

// A reload changes the running scanner's rules in place: the same pool,
// a new ruleset id, and no new goroutines however often it runs. Rules
// that do not compile are refused and the running ones kept.
func TestReloadChangesRulesInPlace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "site.yar")
	writeFile(t, file, "rule SiteA { condition: false }\n")
	cfg := Config{Rules: []string{dir}, Workers: 2}
	opts, err := scannerOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scanner.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	r := &reloader{cfg: cfg, sc: sc, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	before := runtime.NumGoroutine()
	first := sc.RulesetID()

	if r.reload("test") {
		t.Error("a reload of unchanged rules reported a new ruleset")
	}
	writeFile(t, file, "rule SiteB { condition: false }\n")
	for range 10 {
		r.reload("test")
	}
	if sc.RulesetID() == first {
		t.Fatal("the running scanner kept its rules after the rule file changed")
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("%d goroutines after reloads, %d before: reloads started workers", got, before)
	}

	changed := sc.RulesetID()
	writeFile(t, file, "rule Broken { condition: nope }\n")
	if r.reload("test") {
		t.Error("a ruleset that does not compile was reported as loaded")
	}
	if sc.RulesetID() != changed {
		t.Error("a ruleset that does not compile replaced the running one")
	}
}
