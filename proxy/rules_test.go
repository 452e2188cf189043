package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
)

// Run reloads the one scanner's rules in place when their files change on
// disk, and when asked (SIGHUP); rules that do not compile are refused and
// the running ones kept; each change is followed by a rescan of the store.
func TestRunReloadsRulesInPlace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "site.yar")
	writeRule(t, file, "rule SiteA { condition: false }\n")
	var logs testsync.Buffer
	f := newFixture(t, func(o *Options, so *scanner.Options) {
		so.RulePaths = []string{dir}
		o.Rules = gate.RulesSource{Poll: 10 * time.Millisecond,
			Load: func() (scanner.Options, error) { return scanner.Options{RulePaths: []string{dir}}, nil }}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); f.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })

	sc := f.srv.gate.Scanner()
	first := sc.RulesetID()
	replaceRule(t, file, "rule SiteB { condition: false }\n")
	testsync.WaitFor(t, 10*time.Second, "the changed rule file to be reloaded", func() bool { return sc.RulesetID() != first })
	if f.srv.gate.Scanner() != sc {
		t.Fatal("a reload replaced the scanner instead of its rules")
	}

	// Asked, after a change: each reload takes the file as it is now.
	for i := range 20 {
		before := sc.RulesetID()
		replaceRule(t, file, fmt.Sprintf("rule Site%02d { condition: false }\n", i))
		f.srv.ReloadRules("test")
		testsync.WaitFor(t, 10*time.Second, fmt.Sprintf("reload %d", i), func() bool { return sc.RulesetID() != before })
	}
	if n := sc.Workers(); n != 2 {
		t.Errorf("%d workers after 21 reloads, want the pool's 2", n)
	}
	testsync.WaitFor(t, 10*time.Second, "a rescan after the reloads", func() bool {
		return strings.Count(logs.String(), "msg=\"rescan done\"") >= 2
	})

	kept := sc.RulesetID()
	replaceRule(t, file, "rule Broken { condition: nope }\n")
	testsync.WaitFor(t, 10*time.Second, "the refusal of rules that do not compile", func() bool {
		return strings.Contains(logs.String(), "rules reload failed; keeping the current rules")
	})
	if sc.RulesetID() != kept {
		t.Fatal("rules that do not compile replaced the running ones")
	}
}

// replaceRule replaces a rule file whole, as an editor or a deployment
// tool does, so that no reload reads it half written.
func replaceRule(t *testing.T, path, src string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "rule.tmp")
	writeRule(t, tmp, src)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
