package scanner

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

func TestDefaultRulesAreWellFormed(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	if w := s.Warnings(); len(w) > 0 {
		t.Errorf("default rules compile with warnings: %v", w)
	}
	if s.RuleCount() < 10 {
		t.Errorf("RuleCount = %d, want the default ruleset", s.RuleCount())
	}
	categories := map[string]bool{"miner": true, "miner-config": true, "dropper": true, "pool": true, "wallet": true, "packer": true}
	severities := map[string]bool{SeverityHigh: true, SeverityMedium: true, SeverityLow: true}
	for _, r := range s.peek().rules.GetRules() {
		if r.IsPrivate() {
			continue
		}
		metas := map[string]any{}
		for _, m := range r.Metas() {
			metas[m.Identifier] = m.Value
		}
		id := r.Identifier()
		if c, _ := metas["category"].(string); !categories[c] {
			t.Errorf("rule %s: category %q is not one of miner, miner-config, dropper, pool, wallet, packer", id, c)
		}
		if sev, _ := metas["severity"].(string); !severities[sev] {
			t.Errorf("rule %s: severity %q is not high, medium or low", id, sev)
		}
		if d, _ := metas["description"].(string); d == "" || strings.Contains(d, "\n") {
			t.Errorf("rule %s: description %q must be one non-empty line", id, d)
		}
	}
}

// pullgate's own binary embeds the rule sources; it must not be refused
// by them.
func TestRulesDoNotMatchTheirOwnSource(t *testing.T) {
	s := newTestScanner(t, Options{Workers: 1})
	srcs, err := loadSources(nil)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, src := range srcs {
		parts = append(parts, string(src.data))
	}
	layer := tarLayer(t, tfile{name: "usr/bin/pullgate", mode: 0o755, data: samples.ELF(parts...)})
	res, err := s.ScanLayer(context.Background(), strings.NewReader(string(layer)), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Blocking(); len(b) > 0 {
		t.Errorf("a binary embedding the rule sources is blocked: %+v", b)
	}
}

func TestExtraRules(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "team")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(sub, "corp.yar"), `rule CorpBackdoor {
    meta:
        category = "dropper"
        severity = "high"
        description = "corp test backdoor"
    strings:
        $a = "corp-backdoor-marker"
    condition:
        $a and ScriptLike
}
rule NoMeta { strings: $a = "no-meta-marker" condition: $a }
`)
	write(filepath.Join(dir, "README.txt"), "not a rule file")

	base := newTestScanner(t, Options{Workers: 1})
	s := newTestScanner(t, Options{Workers: 1, RulePaths: []string{dir}})
	if s.RuleCount() != base.RuleCount()+2 {
		t.Errorf("RuleCount = %d, want %d", s.RuleCount(), base.RuleCount()+2)
	}
	if s.RulesetID() == base.RulesetID() {
		t.Error("extra rules did not change the ruleset id")
	}
	layer := tarLayer(t,
		reg("opt/run.sh", 0o755, "#!/bin/sh\necho corp-backdoor-marker\n"),
		reg("etc/motd", 0o644, "no-meta-marker"))
	res, err := s.ScanLayer(context.Background(), strings.NewReader(string(layer)), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	if !hasFinding(res.Findings, "CorpBackdoor", "/opt/run.sh") {
		t.Errorf("operator rule did not match: %+v", res.Findings)
	}
	for _, f := range res.Findings {
		if f.Rule == "NoMeta" && (f.Severity != SeverityHigh || f.Category != defaultCategory || f.Description != "NoMeta") {
			t.Errorf("operator rule without meta got %+v, want the documented defaults", f)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.yar")
	write(bad, "rule Ok { condition: true }\n\nrule Broken {\n  condition: $missing\n}\n")
	_, err = New(Options{Workers: 1, RulePaths: []string{bad}})
	if err == nil || !regexp.MustCompile(regexp.QuoteMeta(bad)+`:[45]: undefined string`).MatchString(err.Error()) {
		t.Errorf("compile error = %v, want it to name %s and the line", err, bad)
	}
}

func TestRulesetID(t *testing.T) {
	a := newTestScanner(t, Options{Workers: 1})
	b := newTestScanner(t, Options{Workers: 2})
	c := newTestScanner(t, Options{Workers: 1, Limits: Limits{MaxFiles: 10}})
	if a.RulesetID() != b.RulesetID() {
		t.Error("worker count changed the ruleset id")
	}
	if a.RulesetID() == c.RulesetID() {
		t.Error("limits did not change the ruleset id")
	}
	if len(a.RulesetID()) != 64 {
		t.Errorf("RulesetID %q is not hex sha256", a.RulesetID())
	}
}

// The embedded rule files all carry the escaped indicator convention; a
// plain-text indicator in a rule source would make pullgate match itself.
func TestRuleSourcesEscapeIndicators(t *testing.T) {
	for _, ind := range []string{stratumTCP, "stratum+ssl://", donateLevel, "XMRig/%s", "xmrig", "kdevtmpfsi", "kinsing", "cryptonight", "randomx",
		"xmr-stak", "cpuminer", "minerd", "ccminer", "cgminer", "bfgminer", "ethminer", "lolMiner", "NBMiner", "PhoenixMiner", "nanominer", "SRBMiner",
		"mining.subscribe", "ethash", "kawpow", "nr_hugepages", "wallet_address", "pool_list"} {
		err := fs.WalkDir(defaultRules, "rules", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := defaultRules.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.Contains(string(b), ind) {
				t.Errorf("%s contains the indicator %q in plain text", p, ind)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
