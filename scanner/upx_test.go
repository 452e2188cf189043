package scanner

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/upx"
)

// Packer detection on executables packed by a real UPX: a harmless Go tool
// and a stand-in miner (a Go program carrying XMRig's strings), each
// plain, packed, and packed with the UPX marks rewritten as miners do.
func TestRealUPX(t *testing.T) {
	progs, err := upx.Build()
	if err != nil {
		t.Fatal(err)
	}
	toolHidden := upx.HideMarks(progs.ToolPacked)
	if !upx.Recognised(progs.ToolPacked) || upx.Recognised(toolHidden) {
		t.Fatal("upx should recognise its own output, and not the one with its marks rewritten")
	}
	if bytes.Contains(progs.MinerPacked, []byte("donate.v2.xmrig.com")) {
		t.Fatal("packing left the miner's strings readable; this test needs them hidden")
	}
	s := newTestScanner(t, Options{Workers: 2})

	scan := func(t *testing.T, exe []byte, config []byte) ([]Finding, Decision) {
		t.Helper()
		res, err := s.ScanLayer(context.Background(), bytes.NewReader(tarLayer(t, tfile{name: "usr/local/bin/netd", mode: 0o755, data: exe})), Interactive)
		if err != nil {
			t.Fatal(err)
		}
		cres, err := s.ScanConfig(context.Background(), config, Interactive)
		if err != nil {
			t.Fatal(err)
		}
		fs := append(res.Findings, cres.Findings...)
		return fs, DefaultPolicy().Decide(fs)
	}
	rules := func(fs []Finding) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Rule)
		}
		return out
	}
	walletCmd := samples.ImageConfig([]string{"/usr/local/bin/netd"}, []string{"--user", samples.Wallet}, nil)
	plainCmd := samples.ImageConfig([]string{"/usr/local/bin/netd"}, []string{"--print"}, nil)

	for _, tc := range []struct {
		name     string
		exe      []byte
		config   []byte
		rule     string // a rule that must be among the findings; "" for none at all
		blocked  bool
		absent   string // a rule that must not be among the findings
		blocking string // a rule among the blocking findings
	}{
		{name: "tool", exe: progs.Tool, config: plainCmd},
		{name: "tool packed warns", exe: progs.ToolPacked, config: plainCmd, rule: "PackerUPX"},
		{name: "tool packed, marks hidden, warns", exe: toolHidden, config: plainCmd, rule: "PackerUPXAltered", absent: "PackerUPX"},
		{name: "miner blocks by its strings", exe: progs.Miner, config: plainCmd, rule: "MinerXMRig", blocked: true, blocking: "MinerXMRig"},
		{name: "miner packed: strings hidden, packer warns", exe: progs.MinerPacked, config: plainCmd, rule: "PackerUPX", absent: "MinerXMRig"},
		{name: "miner packed and run with a wallet blocks", exe: progs.MinerPacked, config: walletCmd, rule: "PackerUPX", blocked: true, blocking: "PackerUPX"},
		{name: "miner packed, marks hidden, run with a wallet blocks", exe: upx.HideMarks(progs.MinerPacked), config: walletCmd, rule: "PackerUPXAltered", blocked: true, blocking: "PackerUPXAltered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, d := scan(t, tc.exe, tc.config)
			got := rules(fs)
			if tc.rule == "" && len(fs) > 0 {
				t.Fatalf("findings %v, want none", got)
			}
			if tc.rule != "" && !slices.Contains(got, tc.rule) {
				t.Fatalf("findings %v, want %s", got, tc.rule)
			}
			if tc.absent != "" && slices.Contains(got, tc.absent) {
				t.Fatalf("findings %v, want no %s", got, tc.absent)
			}
			if d.Blocked != tc.blocked {
				t.Fatalf("blocked %v, want %v: findings %v, reason %q", d.Blocked, tc.blocked, got, d.Reason)
			}
			if tc.blocking != "" && !slices.Contains(rules(d.Blocking), tc.blocking) {
				t.Fatalf("blocking findings %v, want %s among them", rules(d.Blocking), tc.blocking)
			}
		})
	}
}
