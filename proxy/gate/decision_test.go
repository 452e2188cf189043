package gate

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// The precedence of Decide on facts alone, including the answers that need
// timing to reach over HTTP (a hold running out, a client leaving, a store
// failing). The same cases over HTTP and through pullgate scan are in
// cmd/pullgate's TestOneDecisionThreePaths.
func TestDecidePrecedence(t *testing.T) {
	layer, config := digest.FromString("layer"), digest.FromString("config")
	high := verdict.Finding{Rule: "MinerXMRig", Category: "miner", Severity: verdict.SeverityHigh, Path: "/usr/bin/xmrig"}
	judged := func(d digest.Digest, c storage.Context, fs ...verdict.Finding) BlobFact {
		return BlobFact{Ref: Ref{Digest: d, Context: c}, State: Judged,
			Verdict: storage.Verdict{Digest: d, Context: c, Status: storage.StatusClean, Findings: fs}}
	}
	scanErr := BlobFact{Ref: Ref{Digest: layer, Context: storage.ContextLayer}, State: Judged,
		Verdict: storage.Verdict{Digest: layer, Status: storage.StatusError, Reason: "limit"}}
	cleanConfig := judged(config, storage.ContextConfig)
	ruled := func(b BlobFact, rid string) BlobFact { b.Verdict.RulesetID = rid; return b }
	deny := &storage.Override{Subject: "x", Action: storage.Deny}
	allow := &storage.Override{Subject: "x", Action: storage.Allow}
	for _, c := range []struct {
		name string
		f    Facts
		want verdict.Outcome
		kind Kind
	}{
		{"clean", Facts{Blobs: []BlobFact{cleanConfig, judged(layer, storage.ContextLayer)}}, verdict.Allowed, Serve},
		{"name refused first", Facts{NameRefused: &Refusal{Outcome: verdict.Policy, Kind: Denied}, Override: allow}, verdict.Policy, Denied},
		{"deny", Facts{Override: deny}, verdict.Overridden, Denied},
		{"override unreadable", Facts{OverrideErr: errors.New("down")}, verdict.UpstreamFailed, Unavailable},
		{"image allow over a finding", Facts{Override: allow, Blobs: []BlobFact{judged(layer, storage.ContextLayer, high)}}, verdict.Overridden, Serve},
		{"image allow over the known-bad list", Facts{Override: allow, KnownBad: []digest.Digest{layer}}, verdict.Overridden, Serve},
		{"invalid", Facts{Invalid: errors.New("bad")}, verdict.Failed, Invalid},
		{"known-bad", Facts{KnownBad: []digest.Digest{layer}, Blobs: []BlobFact{cleanConfig}}, verdict.Blocked, Denied},
		{"finding before scan error", Facts{Blobs: []BlobFact{scanErr, judged(config, storage.ContextConfig, high)}}, verdict.Blocked, Denied},
		{"scan error before upstream", Facts{Blobs: []BlobFact{{State: Failed, Err: errors.New("503")}, scanErr}}, verdict.Failed, Denied},
		{"upstream before pending", Facts{Blobs: []BlobFact{{State: Pending}, {State: Failed, Err: errors.New("503")}}}, verdict.UpstreamFailed, Upstream},
		{"pending", Facts{Blobs: []BlobFact{cleanConfig, {State: Pending}}}, verdict.Pending, Retry},
		{"finding while others pending", Facts{Blobs: []BlobFact{{State: Pending}, judged(layer, storage.ContextLayer, high)}}, verdict.Blocked, Denied},
		{"blob: allow over a finding", Facts{Subject: Blob, Override: allow, Blobs: []BlobFact{judged(layer, storage.ContextLayer, high)}}, verdict.Overridden, Serve},
		{"blob: allow on clean changes nothing", Facts{Subject: Blob, Override: allow, Blobs: []BlobFact{judged(layer, storage.ContextLayer)}}, verdict.Allowed, Serve},
		{"blob: allow cannot make upstream answer", Facts{Subject: Blob, Override: allow, Blobs: []BlobFact{{State: Failed, Err: errors.New("503")}}}, verdict.UpstreamFailed, Upstream},
		{"blob: scan error in a role, clean in another", Facts{Subject: Blob, Blobs: []BlobFact{scanErr, judged(layer, storage.ContextArtifact)}}, verdict.Allowed, Serve},
		{"blob: scan error in its only role", Facts{Subject: Blob, Blobs: []BlobFact{scanErr}}, verdict.Failed, Denied},
		{"blob: finding in any role", Facts{Subject: Blob, Blobs: []BlobFact{judged(layer, storage.ContextArtifact), judged(layer, storage.ContextLayer, high)}}, verdict.Blocked, Denied},
		{"linked deny", Facts{LinkedRefused: &Refusal{Outcome: verdict.Policy, Kind: Denied}}, verdict.Policy, Denied},
		{"digest allow over a linked deny", Facts{LinkedRefused: &Refusal{Outcome: verdict.Policy, Kind: Denied}, Override: allow}, verdict.Overridden, Serve},
		{"digest deny with a linked deny", Facts{LinkedRefused: &Refusal{Outcome: verdict.Policy, Kind: Denied}, Override: deny}, verdict.Policy, Denied},
		{"a blob's deny refuses the image", Facts{BlobDenied: []storage.Override{*deny}, Blobs: []BlobFact{cleanConfig}}, verdict.Overridden, Denied},
		{"image allow over a blob's deny", Facts{Override: allow, BlobDenied: []storage.Override{*deny}}, verdict.Overridden, Serve},
		{"verdicts of two rulesets", Facts{RulesetID: "new", Blobs: []BlobFact{ruled(cleanConfig, "new"), ruled(judged(layer, storage.ContextLayer), "old")}}, verdict.UpstreamFailed, Upstream},
		{"verdicts of one ruleset", Facts{RulesetID: "new", Blobs: []BlobFact{ruled(cleanConfig, "new"), ruled(judged(layer, storage.ContextLayer), "new")}}, verdict.Allowed, Serve},
		{"blob: verdict of other rules", Facts{Subject: Blob, RulesetID: "new", Blobs: []BlobFact{ruled(judged(layer, storage.ContextLayer), "old")}}, verdict.UpstreamFailed, Upstream},
		{"blob: an allowed image's over a finding", Facts{Subject: Blob, ImageAllow: allow, Blobs: []BlobFact{judged(layer, storage.ContextLayer, high)}}, verdict.Overridden, Serve},
		{"blob: an allowed image's over the known-bad list", Facts{Subject: Blob, ImageAllow: allow, KnownBad: []digest.Digest{layer}}, verdict.Overridden, Serve},
		{"blob: its own deny over an allowed image's", Facts{Subject: Blob, Override: deny, ImageAllow: allow}, verdict.Overridden, Denied},
		{"image: an allowed image's blob allow means nothing", Facts{ImageAllow: allow, Blobs: []BlobFact{judged(layer, storage.ContextLayer, high)}}, verdict.Blocked, Denied},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(scanner.DefaultPolicy(), c.f)
			if d.Outcome != c.want || d.Kind != c.kind {
				t.Fatalf("got %s kind %d (%q), want %s kind %d", d.Outcome, d.Kind, d.Message, c.want, c.kind)
			}
		})
	}
}

// The known-bad list follows the policy's action for its category, as the
// scanner's own known-bad findings do: an operator who sets known-bad to
// warn gets a warning, in the gate and in pullgate scan alike.
func TestKnownBadFollowsThePolicy(t *testing.T) {
	p := scanner.DefaultPolicy()
	p.Actions = map[string]scanner.Action{scanner.CategoryKnownBad: scanner.ActionWarn}
	d := Decide(p, Facts{KnownBad: []digest.Digest{digest.FromString("x")}})
	if d.Refused() || len(d.Findings) != 1 || d.Findings[0].Rule != "KnownBadBlob" {
		t.Fatalf("%+v", d)
	}
}
