package scanner

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hillu/go-yara/v4"
)

// ruleset is one compiled set of rules and everything a result takes from
// it. A Scanner has one current ruleset; Reload replaces it while scans
// run. Each scan pins the ruleset current when it starts and every job of
// that scan is scanned under it, so a Result names exactly one ruleset.
//
// The compiled rules are freed when the last holder lets go: the Scanner
// while the ruleset is current, each scan while it runs, each job queued
// or in flight, and each worker whose yara.Scanner was created from them
// (a yara.Scanner must not outlive its rules).
type ruleset struct {
	rules    *yara.Rules
	metas    map[string]ruleMeta
	infos    []RuleInfo
	nrules   int
	knownBad *KnownBad // nil when no list, so workers skip hashing
	id       string
	warnings []string
	paths    []string // the files and folders it was made of (see watchedPaths)

	refs atomic.Int64
}

// liveRulesets counts compiled rulesets not yet freed, so tests can prove
// that replaced rules are freed once nothing uses them.
var liveRulesets atomic.Int64

// compileRuleset compiles the embedded rules and opts.RulePaths under
// limits. The ruleset starts with one hold, its creator's.
func compileRuleset(opts Options, limits Limits) (*ruleset, error) {
	srcs, err := loadSources(opts.RulePaths)
	if err != nil {
		return nil, err
	}
	c, err := compileRules(srcs)
	if err != nil {
		return nil, err
	}
	// Everything the compiler read: the rule files and what they include.
	read := append(slices.Clip(srcs), c.included...)
	metas, nrules := ruleMetas(c.rules)
	var knownBad *KnownBad
	if opts.KnownBadFiles.Len() > 0 {
		knownBad = opts.KnownBadFiles
	}
	rs := &ruleset{
		paths:    watchedPaths(opts, c.included),
		rules:    c.rules,
		metas:    metas,
		infos:    ruleInfos(c.rules, metas, read),
		nrules:   nrules,
		knownBad: knownBad,
		id:       rulesetID(read, limits, knownBad.Digests()),
		warnings: append(c.warnings, lintSources(read)...),
	}
	rs.refs.Store(1)
	liveRulesets.Add(1)
	return rs, nil
}

// watchedPaths are the files and folders a ruleset is made of, for the
// reloader to watch: the rule paths, every file they include (wherever it
// lies), and the known-bad list's file when it was read from one.
func watchedPaths(opts Options, included []ruleSource) []string {
	paths := slices.Clone(opts.RulePaths)
	for _, f := range included {
		if p := strings.TrimPrefix(f.name, includePrefix); !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	if f := opts.KnownBadFiles.File(); f != "" && !slices.Contains(paths, f) {
		paths = append(paths, f)
	}
	return paths
}

// hold takes one more reference. Only a holder may call it, so the count
// is never zero here.
func (rs *ruleset) hold() { rs.refs.Add(1) }

// drop lets one reference go, and frees the compiled rules with the last.
func (rs *ruleset) drop() {
	switch n := rs.refs.Add(-1); {
	case n == 0:
		rs.rules.Destroy()
		liveRulesets.Add(-1)
	case n < 0:
		panic("scanner: ruleset dropped more often than held")
	}
}
