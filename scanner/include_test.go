package scanner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// incRule is a rule of severity high matching marker.
func incRule(name, marker string) string {
	return "rule " + name + " {\n  meta:\n    category = \"miner\"\n    severity = \"high\"\n  strings:\n    $m = \"" + marker + "\"\n  condition:\n    $m\n}\n"
}

// touchLater moves a file's times on, so an edit of the same size is seen.
func touchLater(t *testing.T, path string) {
	t.Helper()
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// An edit of a file that a rule file includes, directly or through
// another included file, and wherever it lies, changes the ruleset id
// after a reload and changes the fingerprint of RulePaths before it; the
// rule the edit adds then matches. Relative includes resolve against the
// folder of the including file.
func TestIncludedFileEditChangesRuleset(t *testing.T) {
	const before, added = "pullgate-include-test-old", "pullgate-include-test-new"
	cases := []struct {
		name   string
		main   string // the rule file's include line
		edited string // the file the test edits, relative to the temp dir
	}{
		{"direct, outside the rules folder", `include "../inc/direct.inc"`, "inc/direct.inc"},
		{"nested, relative to its includer", `include "../inc/sub/outer.inc"`, "inc/sub/inner.inc"},
		{"absolute path", `include "ABS"`, "abs/abs.inc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{"rules", "inc/sub", "abs"} {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(dir, "inc/direct.inc"), incRule("IncOld", before))
			writeFile(t, filepath.Join(dir, "inc/sub/outer.inc"), "include \"inner.inc\"\n")
			writeFile(t, filepath.Join(dir, "inc/sub/inner.inc"), incRule("IncOld", before))
			writeFile(t, filepath.Join(dir, "abs/abs.inc"), incRule("IncOld", before))
			main := strings.Replace(c.main, "ABS", filepath.Join(dir, "abs/abs.inc"), 1)
			writeFile(t, filepath.Join(dir, "rules/main.yar"), main+"\n")
			opts := Options{Workers: 1, RulePaths: []string{filepath.Join(dir, "rules")}}
			s := newTestScanner(t, opts)

			edited := filepath.Join(dir, c.edited)
			if !slices.Contains(s.RulePaths(), edited) {
				t.Fatalf("RulePaths %v lack the included file %s", s.RulePaths(), edited)
			}
			id, print, count := s.RulesetID(), Fingerprint(s.RulePaths()), s.RuleCount()
			if res, err := scanOne(t, s, tfile{name: "etc/x", mode: 0o644, data: []byte(added)}); err != nil || len(res.Findings) != 0 {
				t.Fatalf("before the edit: %v, %v; want clean", res.Findings, err)
			}

			writeFile(t, edited, incRule("IncOld", before)+incRule("IncNew", added))
			touchLater(t, edited)
			if Fingerprint(s.RulePaths()) == print {
				t.Fatal("the fingerprint of RulePaths missed an edit of an included file")
			}
			if err := s.Reload(opts); err != nil {
				t.Fatal(err)
			}
			if s.RuleCount() != count+1 {
				t.Fatalf("rules after the edit: %d, want %d", s.RuleCount(), count+1)
			}
			if s.RulesetID() == id {
				t.Fatal("the ruleset id did not change when an included file did")
			}
			res, err := scanOne(t, s, tfile{name: "etc/x", mode: 0o644, data: []byte(added)})
			if err != nil || len(res.Findings) != 1 || res.Findings[0].Rule != "IncNew" || res.RulesetID != s.RulesetID() {
				t.Fatalf("after the edit: %v, %v under %s; want IncNew under the new id", res.Findings, err, res.RulesetID)
			}
		})
	}
}

// The known-bad list's file is among RulePaths, so an edit of it alone is
// seen by a reloader polling their fingerprint.
func TestKnownBadFileIsWatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known-bad.txt")
	writeFile(t, path, "# none yet\n")
	kb, err := LoadKnownBad(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestScanner(t, Options{Workers: 1, KnownBadFiles: kb})
	if !slices.Contains(s.RulePaths(), path) {
		t.Fatalf("RulePaths %v lack the known-bad file", s.RulePaths())
	}
	print := Fingerprint(s.RulePaths())
	writeFile(t, path, "sha256:"+strings.Repeat("ab", 32)+" listed\n")
	touchLater(t, path)
	if Fingerprint(s.RulePaths()) == print {
		t.Fatal("the fingerprint of RulePaths missed an edit of the known-bad file")
	}
}

// A reload that changes the known-bad list changes KnownBad, in both
// directions, as it changes the ruleset id.
func TestKnownBadFollowsReload(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("aa", 32), "sha256:"+strings.Repeat("bb", 32)
	list := func(ds ...string) *KnownBad {
		k, err := ParseKnownBad(strings.NewReader(strings.Join(ds, "\n")), "test")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	s := newTestScanner(t, Options{Workers: 1, KnownBadFiles: list(a)})
	steps := []struct {
		name   string
		list   *KnownBad
		hasA   bool
		hasB   bool
		sameID bool
	}{
		{"a digest added", list(a, b), true, true, false},
		{"a digest removed", list(b), false, true, false},
		{"the list emptied", nil, false, false, false},
		{"a list again", list(a), true, false, false},
	}
	for _, st := range steps {
		id := s.RulesetID()
		if err := s.Reload(Options{KnownBadFiles: st.list}); err != nil {
			t.Fatal(err)
		}
		if got := s.KnownBad().Has(a); got != st.hasA {
			t.Errorf("%s: KnownBad().Has(a) = %v, want %v", st.name, got, st.hasA)
		}
		if got := s.KnownBad().Has(b); got != st.hasB {
			t.Errorf("%s: KnownBad().Has(b) = %v, want %v", st.name, got, st.hasB)
		}
		if (s.RulesetID() == id) != st.sameID {
			t.Errorf("%s: ruleset id changed: %v", st.name, s.RulesetID() != id)
		}
	}
}

// Includes that cannot be read, or whose name means two files, are
// refused with the file named; the running rules are kept.
func TestIncludeErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string // under the temp dir; rules/ is the rule path
		want  string
	}{
		{"missing file", map[string]string{"rules/main.yar": `include "nope.inc"`}, "nope.inc"},
		{"one name, two files, each including another", map[string]string{
			"rules/a/x.yar":      `include "common.inc"`,
			"rules/a/common.inc": `include "more.inc"`,
			"rules/a/more.inc":   incRule("MoreA", "pullgate-include-a"),
			"rules/b/y.yar":      `include "common.inc"`,
			"rules/b/common.inc": `include "more.inc"`,
			"rules/b/more.inc":   incRule("MoreB", "pullgate-include-b"),
		}, "distinct names"},
		{"syntax error in an included file", map[string]string{
			"rules/main.yar": `include "bad.inc"`,
			"rules/bad.inc":  "rule Bad { condition:",
		}, "bad.inc:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range c.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, p, text+"\n")
			}
			_, err := New(Options{Workers: 1, RulePaths: []string{filepath.Join(dir, "rules")}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v; want an error naming %q", err, c.want)
			}
		})
	}
}

// One include name in two folders, each file including nothing further,
// is not ambiguous: each include is relative to a listed rule file, and
// both included files are compiled and watched.
func TestIncludeSameNameTwoFolders(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, "rules", sub), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "rules", sub, "x.yar"), "include \"common.inc\"\n")
		writeFile(t, filepath.Join(dir, "rules", sub, "common.inc"), incRule("Common"+strings.ToUpper(sub), "pullgate-include-"+sub))
	}
	s := newTestScanner(t, Options{Workers: 1, RulePaths: []string{filepath.Join(dir, "rules")}})
	for _, sub := range []string{"a", "b"} {
		if p := filepath.Join(dir, "rules", sub, "common.inc"); !slices.Contains(s.RulePaths(), p) {
			t.Errorf("RulePaths %v lack %s", s.RulePaths(), p)
		}
		res, err := scanOne(t, s, tfile{name: "etc/x", mode: 0o644, data: []byte("pullgate-include-" + sub)})
		if err != nil || len(res.Findings) != 1 || res.Findings[0].Rule != "Common"+strings.ToUpper(sub) {
			t.Errorf("content of %s: %v, %v", sub, res.Findings, err)
		}
	}
}
