package scanner

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

// scanCase scans a synthetic image (its layer and its config) and
// returns every finding of the image.
func scanCase(t *testing.T, s *Scanner, c samples.Case, compress func(testing.TB, []byte) []byte) []Finding {
	t.Helper()
	var all []Finding
	if len(c.Files) > 0 {
		var files []tfile
		for _, f := range c.Files {
			files = append(files, tfile{name: strings.TrimPrefix(f.Path, "/"), mode: f.Mode, data: f.Data})
		}
		res, err := s.ScanLayer(context.Background(), bytes.NewReader(compress(t, tarLayer(t, files...))), Interactive)
		if err != nil {
			t.Fatalf("%s: ScanLayer: %v", c.Name, err)
		}
		all = append(all, res.Findings...)
	}
	if c.Config != nil {
		res, err := s.ScanConfig(context.Background(), c.Config, Interactive)
		if err != nil {
			t.Fatalf("%s: ScanConfig: %v", c.Name, err)
		}
		all = append(all, res.Findings...)
	}
	return all
}

func rulesOf(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Every synthetic positive is refused by the default policy, under every
// layer encoding, and found by one of the rules meant for it.
func TestPositivesAreBlocked(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range samples.Positives() {
		for _, comp := range compressions {
			t.Run(c.Name+"/"+comp.name, func(t *testing.T) {
				if raceEnabled && strings.HasPrefix(c.Name, "xmrig-large-") && comp.name != "tar" {
					t.Skip("20 MiB compressed again under the race detector is slow; TestLargeArchives covers large archives")
				}
				fs := scanCase(t, s, c, comp.fn)
				d := DefaultPolicy().Decide(fs)
				if !d.Blocked {
					t.Errorf("not blocked; findings %v", rulesOf(fs))
				}
				found := rulesOf(fs)
				if !slices.ContainsFunc(c.Rules, func(r string) bool { return slices.Contains(found, r) }) {
					t.Errorf("found by %v, want one of %v", found, c.Rules)
				}
				if d.Blocked && d.Reason == "" {
					t.Error("blocked without a reason")
				}
			})
		}
	}
}

// Near misses carry weak indicators and are warned about, never refused.
func TestNearMissesAreNotBlocked(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 2})
	for _, c := range samples.NearMisses() {
		t.Run(c.Name, func(t *testing.T) {
			fs := scanCase(t, s, c, compressions[0].fn)
			d := DefaultPolicy().Decide(fs)
			if d.Blocked {
				t.Errorf("blocked: %s; findings %v", d.Reason, rulesOf(fs))
			}
			found := rulesOf(d.Warnings)
			for _, r := range c.Rules {
				if !slices.Contains(found, r) {
					t.Errorf("want a %s warning, got %v", r, found)
				}
			}
		})
	}
}
