package proxy

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

func TestMinerLayerRefused(t *testing.T) {
	f := newFixture(t)
	img := testregistry.MinerImage("miner")
	mdgst := f.hub.Push(t, "someone/tool", "latest", img)
	bad := digest.FromBytes(img.Layers[2])

	resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/latest")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	code, msg := ociError(t, body)
	if code != "DENIED" {
		t.Fatalf("code %s", code)
	}
	for _, want := range []string{"docker.io/someone/tool@" + mdgst.String(), "blocked", "layer " + bad.String(), "file /usr/bin/kworker", "matched "} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	head, hbody := f.do(t, "HEAD", "/v2/someone/tool/manifests/latest")
	if head.StatusCode != http.StatusForbidden || len(hbody) != 0 {
		t.Fatalf("HEAD: %d %q", head.StatusCode, hbody)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("blocked blob served: %d", resp.StatusCode)
	}
	if _, err := f.blobs.Stat(context.Background(), bad); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("blocked layer is in the store: %v", err)
	}
	// The clean layers of the image are stored and can be served: they are
	// clean on their own, and other images may share them. The refusal
	// may come as soon as the miner's layer is judged, while the others
	// are still being ingested.
	testsync.WaitFor(t, 10*time.Second, "the clean layer to be stored", func() bool {
		_, err := f.blobs.Stat(context.Background(), digest.FromBytes(img.Layers[0]))
		return err == nil
	})
}

func TestMinerInConfigRefused(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("cmd")
	img.Config = ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: samples.MinerCmd()}}
	f.hub.Push(t, "someone/web", "v1", img)
	resp, body := f.do(t, "GET", "/v2/someone/web/manifests/v1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "config sha256:") || !strings.Contains(msg, "Entrypoint") {
		t.Fatalf("message %q should name the config and Entrypoint", msg)
	}
}

func TestScanLimitRefusesWithReason(t *testing.T) {
	f := newFixture(t, func(_ *Options, s *scanner.Options) { s.Limits.MaxFiles = 2 })
	img := testregistry.Image{Layers: [][]byte{testregistry.Layer(
		testregistry.File{Path: "a", Data: []byte("1")}, testregistry.File{Path: "b", Data: []byte("2")},
		testregistry.File{Path: "c", Data: []byte("3")})}}
	f.hub.Push(t, "library/many", "1", img)
	resp, body := f.do(t, "GET", "/v2/library/many/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "could not be scanned") {
		t.Fatalf("message %q", msg)
	}
}

func TestOperatorOverrides(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	img := testregistry.MinerImage("miner")
	mdgst := f.hub.Push(t, "someone/tool", "1", img)
	bad := digest.FromBytes(img.Layers[2])
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner image served: %d", resp.StatusCode)
	}

	// Allow the image and its blocked layer: both are served, the layer as
	// upstream has it.
	for _, subject := range []string{mdgst.String(), bad.String()} {
		if err := f.store.PutOverride(ctx, storage.Override{Subject: subject, Action: storage.Allow, Reason: "vendor's test fixture", Actor: "admin", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("allowed image: %d %s", resp.StatusCode, body)
	}
	resp, body := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String())
	if resp.StatusCode != 200 || digest.FromBytes(body) != bad {
		t.Fatalf("allowed layer: %d", resp.StatusCode)
	}
	// Without its own override the layer is still served here, through the
	// allow on the image that lists it; without both it is refused again,
	// although it is stored.
	if err := f.store.DeleteOverride(ctx, bad.String()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String()); resp.StatusCode != 200 {
		t.Fatalf("layer of an allowed image refused: %d", resp.StatusCode)
	}
	if err := f.store.DeleteOverride(ctx, mdgst.String()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("layer served after its overrides were removed: %d", resp.StatusCode)
	}

	// Deny a repository: clean content in it is refused too, and the deny
	// wins over an allow on the digest.
	clean := f.hub.Push(t, "someone/tool", "clean", testregistry.CleanImage("deny"))
	if err := f.store.PutOverride(ctx, storage.Override{Subject: "docker.io/someone/tool", Action: storage.Deny, Reason: "known-bad publisher", Actor: "admin", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	resp, body = f.do(t, "GET", "/v2/someone/tool/manifests/"+clean.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied repository served: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "known-bad publisher") || !strings.Contains(msg, "denied by operator admin") {
		t.Fatalf("message %q", msg)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("deny on the repository must win over allow on the digest: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/blobs/"+digest.FromBytes(img.Layers[0]).String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("blob of a denied repository served: %d", resp.StatusCode)
	}
}

type digestList []digest.Digest

func (l digestList) Has(d digest.Digest) bool { return slices.Contains(l, d) }

func TestPublisherPolicyAndKnownBad(t *testing.T) {
	img := testregistry.Image{Layers: [][]byte{
		testregistry.Layer(testregistry.File{Path: "etc/motd", Data: []byte("shared base")}),
		testregistry.Layer(testregistry.File{Path: "opt/known/tool", Data: []byte("a layer on the known-bad list")}),
	}}
	known := digest.FromBytes(img.Layers[1])
	f := newFixture(t, func(o *Options, _ *scanner.Options) {
		o.Policy = map[string]gate.RepoPolicy{"docker.io": {
			Allow: []string{"library/*", "goodcorp/**"},
			Deny:  []string{"library/evil*"},
		}}
		o.KnownBad = digestList{known}
	})
	for _, repo := range []string{"library/ok", "goodcorp/team/app", "library/evilbox", "docker123321/xmr"} {
		f.hub.Push(t, repo, "1", testregistry.CleanImage(repo))
	}
	cases := []struct {
		path, want string
		status     int
	}{
		{"/v2/ok/manifests/1", "", 200},
		{"/v2/goodcorp/team/app/manifests/1", "", 200},
		{"/v2/library/evilbox/manifests/1", `deny pattern "library/evil*"`, 403},
		{"/v2/docker123321/xmr/manifests/1", "not on the allow list of docker.io", 403},
		{"/v2/docker123321/xmr/blobs/" + digest.FromBytes(img.Layers[0]).String(), "not on the allow list", 403},
	}
	for _, c := range cases {
		resp, body := f.do(t, "GET", c.path)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", c.path, resp.StatusCode, c.status)
			continue
		}
		if c.want != "" {
			if _, msg := ociError(t, body); !strings.Contains(msg, c.want) {
				t.Errorf("%s: message %q lacks %q", c.path, msg, c.want)
			}
		}
	}
	if f.hub.ManifestHeads("docker123321/xmr", "1") != 0 {
		t.Error("a repository refused by policy was looked up upstream")
	}
	// Each request refused by its name is recorded once, as a policy
	// decision with the reason the client read.
	var recorded []string
	for _, ev := range f.srv.live.Recent(100) {
		if ev.Decision == verdict.Policy {
			recorded = append(recorded, ev.Image)
			if ev.Reason == "" || ev.UserAgent == "" {
				t.Errorf("refusal of %s recorded without its reason or user agent: %+v", ev.Image, ev)
			}
		}
	}
	if len(recorded) != 3 {
		t.Errorf("recorded policy refusals %q, want the three requests refused by name", recorded)
	}

	f.hub.Push(t, "library/known", "1", img)
	resp, body := f.do(t, "GET", "/v2/library/known/manifests/1")
	if resp.StatusCode != 403 {
		t.Fatalf("image with a known-bad layer: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, known.String()+" is on the known-bad list") {
		t.Fatalf("message %q", msg)
	}
	if f.hub.CDNGets(known) != 0 {
		t.Error("a known-bad layer was fetched")
	}
}

// Evidence adds up across layers: two different medium indicators in two
// layers block the image though each layer passes alone; a low finding
// only warns, and the image is served with an OCI Warning header.
func TestImageDecisionAddsUpEvidenceAcrossLayers(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "test.yar")
	writeRule(t, rules, `
rule TestMediumA { meta: category = "miner" severity = "medium" description = "first hint" strings: $a = "HINT-ALPHA" condition: $a }
rule TestMediumB { meta: category = "pool" severity = "medium" description = "second hint" strings: $a = "HINT-BRAVO" condition: $a }
rule TestLow { meta: category = "wallet" severity = "low" description = "a wallet" strings: $a = "HINT-LOW" condition: $a }
`)
	f := newFixture(t, func(_ *Options, s *scanner.Options) { s.RulePaths = []string{rules} })
	layer := func(name, content string) []byte {
		return testregistry.Layer(testregistry.File{Path: name, Data: []byte(content)})
	}
	two := testregistry.Image{Layers: [][]byte{layer("a.txt", "HINT-ALPHA"), layer("b.txt", "HINT-BRAVO")}}
	f.hub.Push(t, "library/two", "1", two)
	resp, body := f.do(t, "GET", "/v2/library/two/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("two medium indicators in two layers: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "TestMedium") || !strings.Contains(msg, "(and 1 more)") {
		t.Fatalf("message %q", msg)
	}
	// Each layer alone is fine, and can be served to images that use it.
	if resp, _ := f.do(t, "GET", "/v2/library/two/blobs/"+digest.FromBytes(two.Layers[0]).String()); resp.StatusCode != 200 {
		t.Fatalf("a layer with one medium finding: %d", resp.StatusCode)
	}

	one := testregistry.Image{Layers: [][]byte{layer("a.txt", "HINT-ALPHA"), layer("w.txt", "HINT-LOW")}}
	f.hub.Push(t, "library/one", "1", one)
	resp, _ = f.do(t, "GET", "/v2/library/one/manifests/1")
	if resp.StatusCode != 200 {
		t.Fatalf("one medium and one low: %d", resp.StatusCode)
	}
	warnings := strings.Join(resp.Header.Values("Warning"), "\n")
	if !strings.Contains(warnings, `299 - "pullgate: docker.io/library/one`) || !strings.Contains(warnings, "TestLow") || !strings.Contains(warnings, "TestMediumA") {
		t.Fatalf("Warning headers %q", warnings)
	}
}

// The policy is applied to stored findings when deciding, so changing it
// needs no rescan: a category set to "block" refuses at once.
func TestCategoryActionFromPolicy(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "test.yar")
	writeRule(t, rules, `rule TestLowPool { meta: category = "pool" severity = "low" description = "pool host" strings: $a = "HINT-POOL" condition: $a }`)
	f := newFixture(t, func(o *Options, s *scanner.Options) {
		s.RulePaths = []string{rules}
		o.Decision = scanner.Policy{Actions: map[string]scanner.Action{"pool": scanner.ActionBlock}}
	})
	f.hub.Push(t, "library/pool", "1", testregistry.Image{Layers: [][]byte{testregistry.Layer(testregistry.File{Path: "etc/hosts", Data: []byte("HINT-POOL")})}})
	if resp, _ := f.do(t, "GET", "/v2/library/pool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("category set to block: %d", resp.StatusCode)
	}
}
