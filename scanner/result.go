package scanner

import (
	"cmp"
	"slices"
	"time"

	"github.com/pullgate/pullgate/internal/verdict"
)

// Finding is one indicator found in a layer or an image config: the one
// type the stores and the gate keep too.
type Finding = verdict.Finding

// Severities a rule may declare in its meta.
const (
	SeverityHigh   = verdict.SeverityHigh
	SeverityMedium = verdict.SeverityMedium
	SeverityLow    = verdict.SeverityLow
)

// Result is what one ScanLayer, ScanArtifact or ScanConfig call found.
type Result struct {
	Findings []Finding
	Files    int64 // files scanned: tar entries with a body, hard links (under their own name), members of archives in files, or a raw blob as one
	Bytes    int64 // uncompressed bytes scanned, those scanned again under a hard link's name, unpacked from packed executables and from archives included
	Duration time.Duration
	// RulesetID names the ruleset the content was scanned under: the one
	// current when the scan started, which a Reload during the scan does
	// not change. Record a verdict under this id, never under the
	// Scanner's current one, so findings of older rules are never taken
	// for a verdict of the current rules. Set on error results too.
	RulesetID string
}

// Blocking returns the findings that would refuse an image made of this
// one blob under DefaultPolicy: DefaultPolicy().Decide(r.Findings).Blocking.
// An image's decision takes the findings of all its blobs together (see
// Policy.Decide); this is the same decision for a single blob.
func (r Result) Blocking() []Finding {
	return DefaultPolicy().Decide(r.Findings).Blocking
}

// sortFindings orders findings by path, then rule, so results compare
// and print stably.
func sortFindings(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Rule, b.Rule))
	})
}
