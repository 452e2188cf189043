package scanner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testsync"
)

// reloadMarker is matched by both test rulesets, under different rule
// names, so a finding says which ruleset scanned the content.
const reloadMarker = "pullgate-reload-test-marker"

// twoRulesets writes two rule folders: A holds rule ReloadA, B rule
// ReloadB, each matching reloadMarker.
func twoRulesets(t *testing.T) (a, b []string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"A", "B"} {
		sub := filepath.Join(dir, name)
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		rule := "rule Reload" + name + " {\n  meta:\n    category = \"miner\"\n    severity = \"high\"\n  strings:\n    $m = \"" + reloadMarker + "\"\n  condition:\n    $m\n}\n"
		if err := os.WriteFile(filepath.Join(sub, "site.yar"), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return []string{filepath.Join(dir, "A")}, []string{filepath.Join(dir, "B")}
}

// checkNamed fails unless res names one of the known rulesets and carries
// that ruleset's rule, and only that one.
func checkNamed(res Result, rules map[string]string) error {
	want, ok := rules[res.RulesetID]
	if !ok {
		return errors.New("result names an unknown ruleset " + res.RulesetID)
	}
	found := false
	for _, f := range res.Findings {
		if strings.HasPrefix(f.Rule, "Reload") && f.Rule != want {
			return errors.New("result of ruleset " + want + " has a finding of " + f.Rule)
		}
		found = found || f.Rule == want
	}
	if !found {
		return errors.New("result of ruleset " + want + " lacks its finding")
	}
	return nil
}

// Twenty reloads while layers and configs are scanned concurrently: the
// pool runs N workers at every moment (sampled throughout, and the
// goroutine count comes back to where it was), every result names the
// ruleset it was scanned under and holds that ruleset's findings only, and
// replaced rules are freed once nothing uses them.
func TestReloadKeepsPoolBounded(t *testing.T) {
	const workers = 2
	rulesA, rulesB := twoRulesets(t)
	baseRulesets := liveRulesets.Load()
	baseGoroutines := runtime.NumGoroutine()
	s, err := New(Options{Workers: workers, RulePaths: rulesA})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	idA := s.RulesetID()
	withWorkers := runtime.NumGoroutine()

	// Files over the batch size are one job each, so a layer is several
	// jobs and a reload can land between them.
	var files []tfile
	for i := range 6 {
		files = append(files, reg("/opt/f"+strings.Repeat("x", i), 0o644, reloadMarker+strings.Repeat("z", batchSize)))
	}
	layer := tarLayer(t, files...)
	config := []byte(`{"config":{"Cmd":["sh","-c","` + reloadMarker + `"]}}`)

	var maxLive, scans atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Microsecond) // a sampling rate, not a wait
		defer tick.Stop()
		for {
			maxLive.Store(max(maxLive.Load(), s.live.Load()))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	var mu sync.Mutex
	rules := map[string]string{idA: "ReloadA"}
	var problems []error
	for g := range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var res Result
				var err error
				if g == 0 {
					res, err = s.ScanConfig(context.Background(), config, Interactive)
				} else {
					res, err = s.ScanLayer(context.Background(), bytes.NewReader(layer), Background)
				}
				mu.Lock()
				if err == nil {
					err = checkNamed(res, rules)
				}
				if err != nil {
					problems = append(problems, err)
				}
				mu.Unlock()
				scans.Add(1)
			}
		})
	}

	for i := range 20 {
		paths, name := rulesB, "ReloadB"
		if i%2 == 1 {
			paths, name = rulesA, "ReloadA"
		}
		seen := scans.Load()
		testsync.WaitFor(t, 10*time.Second, "a scan between reloads", func() bool { return scans.Load() > seen })
		// The id is known before any scan can be under it: the rules of
		// a ruleset id never change, so compute it once per folder.
		mu.Lock()
		if err := s.Reload(Options{RulePaths: paths}); err != nil {
			mu.Unlock()
			t.Fatalf("reload %d: %v", i, err)
		}
		rules[s.RulesetID()] = name
		mu.Unlock()
	}
	seen := scans.Load()
	testsync.WaitFor(t, 10*time.Second, "a scan after the last reload", func() bool { return scans.Load() > seen+3 })
	close(stop)
	wg.Wait()

	for _, err := range problems {
		t.Error(err)
	}
	if len(rules) != 2 {
		t.Errorf("reloads gave %d ruleset ids, want 2 (one per folder)", len(rules))
	}
	if got := maxLive.Load(); got != workers {
		t.Errorf("at most %d workers were running during the reloads, want %d", got, workers)
	}
	testsync.WaitFor(t, 10*time.Second, "the goroutines to come back to the pool's own", func() bool { return runtime.NumGoroutine() <= withWorkers })
	testsync.WaitFor(t, 10*time.Second, "replaced rules to be freed", func() bool { return liveRulesets.Load() == baseRulesets+1 })
	s.Close()
	testsync.WaitFor(t, 10*time.Second, "the workers to stop", func() bool { return runtime.NumGoroutine() <= baseGoroutines })
	if n := liveRulesets.Load(); n != baseRulesets {
		t.Errorf("%d compiled rulesets left after Close, want none", n-baseRulesets)
	}
}

// A scan whose job is running when the rules are reloaded finishes under
// the rules it started with and says so; the idle worker then frees the
// old rules; the next scan uses the new rules.
func TestReloadMidScanKeepsItsRuleset(t *testing.T) {
	rulesA, rulesB := twoRulesets(t)
	base := liveRulesets.Load()
	s := newTestScanner(t, Options{Workers: 1, RulePaths: rulesA})
	idA := s.RulesetID()
	entered, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.testHookJob = func(*job) {
		once.Do(func() {
			close(entered)
			<-hold
		})
	}
	layer := tarLayer(t, reg("/usr/bin/x", 0o755, reloadMarker))
	done := make(chan Result)
	go func() {
		res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-entered
	if err := s.Reload(Options{RulePaths: rulesB}); err != nil {
		t.Fatal(err)
	}
	idB := s.RulesetID()
	if idB == idA {
		t.Fatal("reload to other rules kept the ruleset id")
	}
	close(hold)
	old := <-done
	if err := checkNamed(old, map[string]string{idA: "ReloadA"}); err != nil {
		t.Errorf("scan started before the reload: %v", err)
	}
	// The worker ran the old scan's job under A and is idle now: it lets
	// go of A, which nothing else uses, so A is freed before any new job.
	testsync.WaitFor(t, 10*time.Second, "the old rules to be freed by the idle worker", func() bool { return liveRulesets.Load() == base+1 })
	res, err := s.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkNamed(res, map[string]string{idB: "ReloadB"}); err != nil {
		t.Errorf("scan started after the reload: %v", err)
	}
}

// A reload that cannot apply is refused and the running rules kept.
func TestReloadRefused(t *testing.T) {
	rulesA, _ := twoRulesets(t)
	broken := filepath.Join(t.TempDir(), "broken.yar")
	if err := os.WriteFile(broken, []byte("rule Broken { condition: nope }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newTestScanner(t, Options{Workers: 1, RulePaths: rulesA})
	id := s.RulesetID()
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"rules that do not compile", Options{RulePaths: []string{broken}}},
		{"other workers", Options{Workers: 3}},
		{"other limits", Options{Limits: Limits{MaxFiles: 7}}},
	} {
		if err := s.Reload(c.opts); err == nil {
			t.Errorf("%s: reload accepted", c.name)
		}
		if s.RulesetID() != id {
			t.Errorf("%s: the refused reload changed the ruleset", c.name)
		}
	}
	s.Close()
	if err := s.Reload(Options{RulePaths: rulesA}); !errors.Is(err, ErrClosed) {
		t.Errorf("reload after Close: %v, want ErrClosed", err)
	}
}
