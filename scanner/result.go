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
	Path        string `json:"path"`        // file path inside the layer, absolute ("/usr/bin/kworker"), or "config:Cmd", "config:Entrypoint", "config:Env", "config:history[3]" for image configs; for content unpacked from a packed executable, the file's path followed by how it was packed: "/usr/sbin/sysupdate (UPX-packed, marks altered)"
	// File is set when Path names content unpacked from a file: that
	// file's path inside the layer ("/usr/sbin/sysupdate"). Empty otherwise.
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
	Files    int64 // files scanned: tar entries with a body, hard links (under their own name), or a raw blob as one
	Bytes    int64 // uncompressed bytes scanned, those scanned again under a hard link's name and those unpacked from packed executables included
	Duration time.Duration
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
