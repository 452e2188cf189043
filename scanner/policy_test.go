package scanner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
)

func fnd(rule, cat, sev, path string) Finding {
	return Finding{Rule: rule, Category: cat, Severity: sev, Description: rule, Path: path}
}

func TestPolicyDecide(t *testing.T) {
	xmrig := fnd("MinerXMRig", CategoryMiner, SeverityHigh, "/usr/bin/kworker")
	name := fnd("MinerNameExecutable", CategoryMiner, SeverityMedium, "/usr/bin/xmrig")
	name2 := fnd("MinerNameExecutable", CategoryMiner, SeverityMedium, "/opt/xmrig")
	tuning := fnd("MinerTuningScript", CategoryMiner, SeverityMedium, "/boost.sh")
	stratumData := fnd("MinerStratumURL", CategoryPool, SeverityMedium, "/etc/pool")
	pool := fnd("MiningPoolDomain", CategoryPool, SeverityLow, "/etc/blocklist")
	wallet := fnd("MoneroWalletAddress", CategoryWallet, SeverityLow, "config:Env")
	upx := fnd("PackerUPX", CategoryPacker, SeverityLow, "/usr/local/bin/helm")
	upx2 := fnd("PackerUPX", CategoryPacker, SeverityLow, "/usr/local/bin/kubectl")
	altered := fnd("PackerUPXAltered", CategoryPacker, SeverityMedium, "/bin/netd")
	known := fnd(KnownBadRule, CategoryKnownBad, SeverityHigh, "/x")
	encrypted := fnd(ArchiveUnreadableRule, CategoryArchive, SeverityMedium, "/srv/backup.zip!notes.txt")
	failed := fnd("PackerUnpackFailed", CategoryPacker, SeverityMedium, "/bin/netd")

	cases := []struct {
		name    string
		policy  Policy
		in      []Finding
		blocked bool
		nblock  int
	}{
		{"nothing", DefaultPolicy(), nil, false, 0},
		{"high blocks", DefaultPolicy(), []Finding{xmrig, pool}, true, 1},
		{"known-bad file blocks", DefaultPolicy(), []Finding{known}, true, 1},
		{"one medium warns", DefaultPolicy(), []Finding{name}, false, 0},
		{"one medium rule in two files warns", DefaultPolicy(), []Finding{name, name2}, false, 0},
		{"two different medium rules block", DefaultPolicy(), []Finding{name, tuning}, true, 2},
		{"medium and low warn", DefaultPolicy(), []Finding{name, pool, wallet}, false, 0},
		{"lows warn", DefaultPolicy(), []Finding{pool, wallet}, false, 0},
		{"packed alone warns", DefaultPolicy(), []Finding{upx, upx2}, false, 0},
		{"packed and pool domain warn", DefaultPolicy(), []Finding{upx, pool}, false, 0},
		{"packed and wallet block", DefaultPolicy(), []Finding{upx, wallet}, true, 2},
		{"packed and a medium block", DefaultPolicy(), []Finding{upx, stratumData}, true, 2},
		{"two packer rules are one indicator", DefaultPolicy(), []Finding{upx, altered}, false, 0},
		{"altered packer and wallet block", DefaultPolicy(), []Finding{altered, wallet}, true, 2},
		// Outside attack round 21, FB1: a packed Go tool and an encrypted
		// zip member are no two reasons; a packer that was not read is.
		{"packed and an unread archive member warn", DefaultPolicy(), []Finding{upx, encrypted}, false, 0},
		{"packed, an unread member and a medium block", DefaultPolicy(), []Finding{upx, encrypted, stratumData}, true, 3},
		{"packed and unread, and an unread member block", DefaultPolicy(), []Finding{upx, failed, encrypted}, true, 3},
		{"altered packer and an unread member block", DefaultPolicy(), []Finding{altered, encrypted}, true, 2},
		{"duplicates count once", DefaultPolicy(), []Finding{xmrig, xmrig}, true, 1},
		{"threshold 3", Policy{MediumToBlock: 3}, []Finding{name, tuning}, false, 0},
		{"threshold 1", Policy{MediumToBlock: 1}, []Finding{name}, true, 1},
		{"zero policy has no packer corroboration", Policy{}, []Finding{upx, wallet}, false, 0},
		{"category ignored", Policy{Actions: map[string]Action{CategoryMiner: ActionIgnore}}, []Finding{xmrig}, false, 0},
		{"category warned", Policy{Actions: map[string]Action{CategoryMiner: ActionWarn}}, []Finding{xmrig, name, tuning}, false, 0},
		{"category blocks", Policy{Actions: map[string]Action{CategoryPacker: ActionBlock}}, []Finding{upx}, true, 1},
		{"packer ignored: no corroboration", Policy{Actions: map[string]Action{CategoryPacker: ActionIgnore}, PackerCorroborators: []string{CategoryWallet}}, []Finding{upx, wallet}, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.policy.Decide(c.in)
			if d.Blocked != c.blocked || len(d.Blocking) != c.nblock {
				t.Fatalf("Decide = blocked %v with %d blocking %+v; want %v with %d", d.Blocked, len(d.Blocking), d.Blocking, c.blocked, c.nblock)
			}
			if d.Blocked != (d.Reason != "") {
				t.Errorf("Reason %q for blocked=%v", d.Reason, d.Blocked)
			}
			kept := 0
			for _, f := range c.in {
				if c.policy.Actions[f.Category] != ActionIgnore {
					kept++
				}
			}
			if got := len(d.Blocking) + len(d.Warnings); kept > 0 && got == 0 {
				t.Errorf("findings disappeared: %d in, none out", kept)
			}
		})
	}
	if d := DefaultPolicy().Decide([]Finding{name, xmrig}); !strings.Contains(d.Reason, "MinerXMRig") {
		t.Errorf("Reason %q should name the high finding first", d.Reason)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Error(err)
	}
	if err := (Policy{Actions: map[string]Action{"miner": "allow"}}).Validate(); err == nil {
		t.Error("unknown action accepted")
	}
	if err := (Policy{MediumToBlock: -1}).Validate(); err == nil {
		t.Error("negative threshold accepted")
	}
}

// Result.Blocking is the default policy's decision for one blob.
func TestResultBlockingIsDefaultPolicy(t *testing.T) {
	in := []Finding{
		fnd("PackerUPX", CategoryPacker, SeverityLow, "/a"),
		fnd("MoneroWalletAddress", CategoryWallet, SeverityLow, "/b"),
	}
	r := Result{Findings: in}
	if got, want := len(r.Blocking()), len(DefaultPolicy().Decide(in).Blocking); got != want || got != 2 {
		t.Errorf("Blocking() = %d findings, Decide = %d, want 2", got, want)
	}
}

func TestKnownBad(t *testing.T) {
	bad := []byte("#!/bin/sh\necho a harmless file that a list calls bad\n")
	badSum := "sha256:" + hexSHA256(bad)
	bigBad := append(samples.ELF("ordinary"), samples.Filler(3*minWindow)...)
	list := "# known bad\n" + badSum + "  kinsing loader v3\n\n" + strings.TrimPrefix("sha256:"+hexSHA256(bigBad), "sha256:") + "\n"
	path := filepath.Join(t.TempDir(), "known-bad.txt")
	if err := os.WriteFile(path, []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	kb, err := LoadKnownBad(path)
	if err != nil {
		t.Fatal(err)
	}
	if kb.Len() != 2 || !kb.Has(badSum) || !kb.Has(strings.ToUpper(strings.TrimPrefix(badSum, "sha256:"))) || kb.Has("sha256:"+strings.Repeat("0", 64)) || kb.Has("nonsense") {
		t.Fatalf("set = %v", kb.Digests())
	}
	if note, ok := kb.Note(badSum); !ok || note != "kinsing loader v3" {
		t.Errorf("Note = %q, %v", note, ok)
	}
	var nilSet *KnownBad
	if nilSet.Has(badSum) || nilSet.Len() != 0 {
		t.Error("nil set is not empty")
	}

	s := newTestScanner(t, Options{Workers: 2, KnownBadFiles: kb, Limits: Limits{Window: minWindow}})
	plain := newTestScanner(t, Options{Workers: 2, Limits: Limits{Window: minWindow}})
	if s.RulesetID() == plain.RulesetID() {
		t.Error("the known-bad list does not change the ruleset id")
	}
	layer := tarLayer(t,
		tfile{name: "opt/run.sh", mode: 0o755, data: bad},
		tfile{name: "usr/lib/big.so", mode: 0o644, data: bigBad},
		reg("etc/ok", 0o644, "fine"))
	res, err := s.ScanLayer(context.Background(), bytes.NewReader(gzipBytes(t, layer)), Interactive)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/opt/run.sh", "/usr/lib/big.so"} {
		if !hasFinding(res.Blocking(), KnownBadRule, p) {
			t.Errorf("known-bad %s not blocked: %+v", p, res.Findings)
		}
	}
	if len(res.Findings) != 2 {
		t.Errorf("findings = %+v, want the two listed files", res.Findings)
	}
	res, err = plain.ScanLayer(context.Background(), bytes.NewReader(layer), Interactive)
	if err != nil || len(res.Findings) != 0 {
		t.Errorf("without the list: %+v, %v", res.Findings, err)
	}

	for _, bad := range []string{"sha256:abc\n", "md5:" + strings.Repeat("0", 32) + "\n", "ok\n"} {
		if _, err := ParseKnownBad(strings.NewReader("# c\n"+bad), "list"); err == nil || !strings.Contains(err.Error(), "list:2") {
			t.Errorf("ParseKnownBad(%q) err = %v, want list:2", bad, err)
		}
	}
}
