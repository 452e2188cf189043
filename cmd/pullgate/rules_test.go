package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yar")
	writeFile(t, good, `rule CorpMarker {
    meta:
        category = "dropper"
        severity = "medium"
        description = "corp marker"
    strings:
        $a = "corp-marker-string"
        $slow = /a.b/
    condition:
        $a or $slow
}
`)
	var out, errOut bytes.Buffer
	if code := run([]string{"rules", "check", "--rules", good}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"MinerXMRig", "PackerUPXAltered", "CorpMarker", "dropper", "medium", good + ":1", "rules compiled"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(regexp.QuoteMeta(good) + `:8: .*\$slow`).MatchString(errOut.String()) {
		t.Errorf("no slow-string warning at %s:8:\n%s", good, errOut.String())
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"rules", "check", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var doc struct {
		Rules []struct{ Name, Category, Severity, Description, Source string }
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Rules) < 20 {
		t.Errorf("%d rules listed", len(doc.Rules))
	}
	for _, r := range doc.Rules {
		if r.Category == "" || r.Severity == "" || r.Description == "" || !strings.HasPrefix(r.Source, "embedded:rules/") {
			t.Errorf("rule listed without meta or source: %+v", r)
		}
	}
	if errOut.Len() > 0 {
		t.Errorf("default rules warn: %s", errOut.String())
	}

	bad := filepath.Join(dir, "bad.yar")
	writeFile(t, bad, "rule Ok { condition: true }\n\nrule Broken {\n  condition: $missing\n}\n")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"rules", "check", "--rules", bad}, &out, &errOut); code != 1 {
		t.Errorf("broken rules: exit %d, want 1", code)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(bad) + `:[45]: undefined string`).MatchString(errOut.String()) {
		t.Errorf("error does not name file:line: %s", errOut.String())
	}
}
