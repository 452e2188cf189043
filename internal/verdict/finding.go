package verdict

import "github.com/opencontainers/go-digest"

// Finding is one indicator found in a layer, an image config or an
// artifact. The scanner fills every field but Layer; the gate sets Layer to
// the blob the finding was made in when it stores or reports it.
type Finding struct {
	Rule        string `json:"rule"`        // YARA rule name, e.g. "MinerXMRig"
	Category    string `json:"category"`    // rule meta: miner, miner-config, dropper, pool, wallet, packer
	Severity    string `json:"severity"`    // rule meta: high, medium, low
	Description string `json:"description"` // rule meta, one line a person can act on, e.g. "XMRig cryptominer"
	// Path is where the finding is: a file path inside the layer, absolute
	// ("/usr/bin/kworker"); "config:Cmd", "config:Entrypoint",
	// "config:Env", "config:history[3]" in an image config; for content
	// unpacked from a packed executable, the file's path followed by how it
	// was packed ("/usr/sbin/sysupdate (UPX-packed, marks altered)"); for a
	// member of an archive in a file, or a payload decoded from a script,
	// the whole path through it ("/opt/x/xmrig.tar.gz!xmrig-6.21.0/xmrig",
	// "/tmp/install.sh!base64@79!xmrig").
	Path string `json:"path"`
	// File is set when Path names content unpacked from a file (a packed
	// executable, an archive, a script's payload): that file's path inside
	// the layer ("/usr/sbin/sysupdate", "/opt/x/xmrig.tar.gz").
	File string `json:"file,omitempty"`
	// Layer is the digest of the blob the finding was made in.
	Layer digest.Digest `json:"layer,omitempty"`
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
