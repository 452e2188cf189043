package scanner

import (
	"cmp"
	"slices"
	"time"
)

// Finding is one indicator found in a layer or an image config.
type Finding struct {
	Rule        string `json:"rule"`        // YARA rule name, e.g. "MinerXMRig"
	Category    string `json:"category"`    // rule meta: miner, miner-config, dropper, pool, wallet, packer
	Severity    string `json:"severity"`    // rule meta: high, medium, low
	Description string `json:"description"` // rule meta, one line a person can act on, e.g. "XMRig cryptominer"
	Path        string `json:"path"`        // file path inside the layer, absolute ("/usr/bin/kworker"), or "config:Cmd", "config:Entrypoint", "config:Env", "config:history[3]" for image configs; for content unpacked from a packed executable, the file's path followed by how it was packed: "/usr/sbin/sysupdate (UPX-packed, marks altered)"; for a member of an archive in a file (or a payload decoded from a script), the whole path through it: "/opt/x/xmrig.tar.gz!xmrig-6.21.0/xmrig", "/tmp/install.sh!base64@79!xmrig"
	// File is set when Path names content unpacked from a file (a packed
	// executable, an archive, a script's payload): that file's path inside
	// the layer ("/usr/sbin/sysupdate", "/opt/x/xmrig.tar.gz"). Empty
	// otherwise.
	File string `json:"file,omitempty"`
}

// FilePath is the path of the file a finding is in: File when the
// finding is in content unpacked from it, otherwise Path.
func (f Finding) FilePath() string {
	if f.File != "" {
		return f.File
	}
	return f.Path
}

// Severities a rule may declare in its meta.
const (
	SeverityHigh   = "high"
	SeverityMedium = "medium"
	SeverityLow    = "low"
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
