package main

import (
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/scanner"
)

// The gate's known-bad check asks the scanner's current list: after a
// reload with a digest added the adapter says listed, after one with it
// removed it says not, as the scans do.
func TestKnownBadAdapterFollowsReload(t *testing.T) {
	a, b := digest.FromString("known-bad a"), digest.FromString("known-bad b")
	cfg := defaultConfig()
	cfg.KnownBad = filepath.Join(t.TempDir(), "known-bad.txt")
	cfg.Workers = 1
	writeFile(t, cfg.KnownBad, a.String()+"\n")
	sopts, err := scannerOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scanner.New(sopts)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	kb := knownBadDigests{sc}

	steps := []struct {
		name         string
		list         string
		wantA, wantB bool
	}{
		{"at start", a.String() + "\n", true, false},
		{"a digest added", a.String() + "\n" + b.String() + " added\n", true, true},
		{"a digest removed", b.String() + "\n", false, true},
		{"the list emptied", "", false, false},
	}
	for _, st := range steps {
		writeFile(t, cfg.KnownBad, st.list)
		opts, err := scannerOptions(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Reload(opts); err != nil {
			t.Fatal(err)
		}
		if kb.Has(a) != st.wantA || kb.Has(b) != st.wantB {
			t.Errorf("%s: listed a=%v b=%v, want a=%v b=%v", st.name, kb.Has(a), kb.Has(b), st.wantA, st.wantB)
		}
	}
}
