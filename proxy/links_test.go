package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/manifest/schema2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
)

// minerConfigImage is an image whose only finding is in its config: its
// Entrypoint runs a miner.
func minerConfigImage(name string) testregistry.Image {
	img := testregistry.CleanImage(name)
	img.Config = ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: samples.MinerCmd()}}
	return img
}

// waitVerdict waits, with a deadline, for dgst to have a verdict in context
// c under the current ruleset (a scan the gate stopped waiting for goes on
// in the background).
func waitVerdict(t *testing.T, f *fixture, dgst digest.Digest, c storage.Context) storage.Verdict {
	t.Helper()
	var v storage.Verdict
	testsync.WaitFor(t, 20*time.Second, "a "+string(c)+" verdict for "+dgst.String(), func() bool {
		var err error
		v, err = f.store.Verdict(context.Background(), dgst, f.srv.gate.Scanner().RulesetID(), c)
		return err == nil
	})
	return v
}

// A config fetched first as a bare blob is judged as what it is then (an
// artifact); the manifest that names it as its config has it scanned as a
// config, and is refused for what is in it.
func TestConfigFetchedFirstAsBlobStillRefused(t *testing.T) {
	f := newFixture(t)
	img := minerConfigImage("cfg-first")
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	mdgst := f.hub.Push(t, "someone/web", "v1", img)

	// Step 1: the config by itself, before any manifest names it. Whatever
	// the answer, it must not decide the manifest.
	f.do(t, "GET", "/v2/someone/web/blobs/"+built.ConfigDigest.String())
	if _, err := f.store.Verdict(context.Background(), built.ConfigDigest, f.srv.gate.Scanner().RulesetID(), storage.ContextConfig); err == nil {
		t.Fatal("a bare blob request left a config verdict")
	}

	// Step 2: the manifest, by digest and by tag.
	for _, ref := range []string{mdgst.String(), "v1"} {
		resp, body := f.do(t, "GET", "/v2/someone/web/manifests/"+ref)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("manifest %s after its config was fetched bare: %d %s", ref, resp.StatusCode, body)
		}
		if _, msg := ociError(t, body); !strings.Contains(msg, "config "+built.ConfigDigest.String()) {
			t.Fatalf("message %q should name the config", msg)
		}
	}
	v := waitVerdict(t, f, built.ConfigDigest, storage.ContextConfig)
	if !slices.ContainsFunc(v.Findings, func(f storage.Finding) bool { return f.Rule == "MinerInImageConfig" }) {
		t.Fatalf("config verdict findings %+v lack MinerInImageConfig", v.Findings)
	}
	// Now that a manifest names it as a config, the bare blob is judged as
	// one and refused too.
	if resp, _ := f.do(t, "GET", "/v2/someone/web/blobs/"+built.ConfigDigest.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("config blob of a refused image: %d", resp.StatusCode)
	}
}

// One digest listed as the config and as a layer is scanned in both
// contexts, and the image is refused.
func TestDigestAsConfigAndLayerScannedInBoth(t *testing.T) {
	f := newFixture(t)
	img := minerConfigImage("both")
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	f.hub.PushBlob(t, "someone/both", built.Config)
	cfg := map[string]any{"mediaType": built.ConfigMediaType, "digest": built.ConfigDigest, "size": len(built.Config)}
	asLayer := map[string]any{"mediaType": schema2.MediaTypeLayer, "digest": built.ConfigDigest, "size": len(built.Config)}
	raw, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": schema2.MediaTypeManifest, "config": cfg, "layers": []any{asLayer}})
	if err != nil {
		t.Fatal(err)
	}
	f.hub.PushManifest(t, "someone/both", "1", schema2.MediaTypeManifest, raw)

	resp, body := f.do(t, "GET", "/v2/someone/both/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a digest that is config and layer: %d %s", resp.StatusCode, body)
	}
	config := waitVerdict(t, f, built.ConfigDigest, storage.ContextConfig)
	layer := waitVerdict(t, f, built.ConfigDigest, storage.ContextLayer)
	if config.Status != storage.StatusBlocked {
		t.Errorf("config verdict %s, want blocked", config.Status)
	}
	if config.Context != storage.ContextConfig || layer.Context != storage.ContextLayer {
		t.Errorf("contexts %q and %q", config.Context, layer.Context)
	}
}

// Policy and repository denies reach the content, not only the name: the
// same digest asked for under another repository is refused, blobs too,
// and a denied repository's tags are not listed.
func TestDeniedContentRefusedUnderAnotherName(t *testing.T) {
	deny := map[string]func(t *testing.T, f *fixture){
		"policy": func(_ *testing.T, f *fixture) {
			f.srv.gate.SetPolicy(map[string]gate.RepoPolicy{"docker.io": {Deny: []string{"library/clean"}}})
		},
		"override": func(t *testing.T, f *fixture) {
			o := storage.Override{Subject: "docker.io/library/clean", Action: storage.Deny, Reason: "publisher pulled", Actor: "admin", Time: time.Now()}
			if err := f.store.PutOverride(context.Background(), o); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, apply := range deny {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			img := testregistry.CleanImage("shared")
			mdgst := f.hub.Push(t, "library/clean", "1", img)
			f.hub.Push(t, "library/xyz", "1", img)
			layer := digest.FromBytes(img.Layers[0])
			if resp, body := f.do(t, "GET", "/v2/library/clean/manifests/1"); resp.StatusCode != 200 {
				t.Fatalf("before the deny: %d %s", resp.StatusCode, body)
			}
			// Before the deny, the same digest under library/xyz is served.
			if resp, body := f.do(t, "GET", "/v2/library/xyz/manifests/"+mdgst.String()); resp.StatusCode != 200 {
				t.Fatalf("before the deny, under library/xyz: %d %s", resp.StatusCode, body)
			}
			apply(t, f)
			refused := []string{
				"/v2/library/clean/manifests/1",
				"/v2/library/clean/blobs/" + layer.String(),
				"/v2/library/clean/tags/list",
			}
			elsewhere := []string{"/v2/library/xyz/manifests/" + mdgst.String(), "/v2/library/xyz/manifests/1"}
			if name == "override" {
				// An operator's deny reaches the image under every name
				// it is known under.
				refused = append(refused, elsewhere...)
			} else {
				// The publisher policy judges the name asked for: under
				// an admitted name that upstream confirmed carries it, the
				// image is that publisher's (re-pushes are common).
				for _, path := range elsewhere {
					if resp, body := f.do(t, "GET", path); resp.StatusCode != http.StatusOK {
						t.Errorf("%s under an admitted name after the policy deny: %d %s", path, resp.StatusCode, body)
					}
				}
			}
			for _, path := range refused {
				resp, body := f.do(t, "GET", path)
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("%s after the deny: %d %s", path, resp.StatusCode, body)
					continue
				}
				if _, msg := ociError(t, body); !strings.Contains(msg, "library/clean") {
					t.Errorf("%s: message %q does not name the refused repository", path, msg)
				}
			}
			// A layer is a building block many images share (a base
			// image's): under a name that is admitted and that upstream
			// confirmed carries it, it is served; the image is not.
			if resp, body := f.do(t, "GET", "/v2/library/xyz/blobs/"+layer.String()); resp.StatusCode != http.StatusOK {
				t.Errorf("a shared layer under an admitted name after the deny: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// A repository allow lifts the publisher policy and nothing else: a blocked
// image in that repository stays refused, by tag and by digest. Only an
// allow naming the digest serves it.
func TestRepositoryAllowDoesNotServeBlockedDigest(t *testing.T) {
	f := newFixture(t)
	f.srv.gate.SetPolicy(map[string]gate.RepoPolicy{"docker.io": {Allow: []string{"library/*"}}})
	ctx := context.Background()
	img := testregistry.MinerImage("miner")
	mdgst := f.hub.Push(t, "someone/tool", "1", img)
	f.hub.Push(t, "someone/tool", "clean", testregistry.CleanImage("allowed"))
	bad := digest.FromBytes(img.Layers[2])

	if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/clean"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a repository outside the allow list: %d", resp.StatusCode)
	}
	put := func(subject string) {
		o := storage.Override{Subject: subject, Action: storage.Allow, Reason: "vendor's tool", Actor: "admin", Time: time.Now()}
		if err := f.store.PutOverride(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	put("docker.io/someone/tool")
	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/clean"); resp.StatusCode != 200 {
		t.Fatalf("a repository allow should lift the policy: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/v2/someone/tool/manifests/1", "/v2/someone/tool/manifests/" + mdgst.String(), "/v2/someone/tool/blobs/" + bad.String()} {
		if resp, body := f.do(t, "GET", path); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s served under a repository allow: %d %s", path, resp.StatusCode, body)
		}
	}
	put(mdgst.String())
	put(bad.String())
	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/"+mdgst.String()); resp.StatusCode != 200 {
		t.Fatalf("image allowed by digest: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.do(t, "GET", "/v2/someone/tool/blobs/"+bad.String()); resp.StatusCode != 200 || digest.FromBytes(body) != bad {
		t.Fatalf("layer allowed by digest: %d", resp.StatusCode)
	}
}

// Content is served only under names upstream confirmed carry it: a digest
// asked for under a repository that does not have it is not found, after
// upstream was asked; a warm request under a linked name asks nothing.
func TestDigestServedOnlyUnderConfirmedNames(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("real")
	mdgst := f.hub.Push(t, "library/real", "1", img)
	f.hub.Push(t, "library/other", "1", testregistry.CleanImage("other"))
	layer := digest.FromBytes(img.Layers[0])
	if resp, body := f.do(t, "GET", "/v2/library/real/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Warm: by digest under the name it came from, no upstream round trip.
	if resp, body := f.do(t, "GET", "/v2/library/real/manifests/"+mdgst.String()); resp.StatusCode != 200 {
		t.Fatalf("by digest under its own name: %d %s", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/real/blobs/"+layer.String()); resp.StatusCode != 200 {
		t.Fatalf("layer under its own name: %d", resp.StatusCode)
	}
	if n := f.hub.ManifestHeads("library/real", mdgst.String()) + f.hub.ManifestGets("library/real", mdgst.String()); n != 1 {
		t.Errorf("manifest by digest under a linked name: %d upstream requests, want only the first fetch", n)
	}

	cases := []struct {
		path, code string
		status     int
	}{
		{"/v2/library/other/manifests/" + mdgst.String(), "MANIFEST_UNKNOWN", http.StatusNotFound},
		{"/v2/library/other/blobs/" + layer.String(), "BLOB_UNKNOWN", http.StatusNotFound},
		{"/v2/library/nowhere/manifests/" + mdgst.String(), "MANIFEST_UNKNOWN", http.StatusNotFound},
	}
	for _, c := range cases {
		resp, body := f.do(t, "GET", c.path)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.path, resp.StatusCode, body, c.status)
			continue
		}
		if code, _ := ociError(t, body); code != c.code {
			t.Errorf("%s: code %s, want %s", c.path, code, c.code)
		}
	}
	// (A first request in a new repository scope meets the token challenge.)
	if n := f.hub.ManifestHeads("library/other", mdgst.String()); n == 0 {
		t.Error("upstream was not asked about the manifest under library/other")
	}
	if n := f.hub.ManifestGets("library/other", mdgst.String()); n != 0 {
		t.Errorf("the manifest was fetched %d times under library/other; a HEAD is enough", n)
	}
	// Upstream unreachable: the name cannot be confirmed, and nothing is served.
	f.hub.SetDown(true)
	for _, path := range []string{"/v2/library/third/manifests/" + mdgst.String(), "/v2/library/third/blobs/" + layer.String()} {
		if resp, body := f.do(t, "GET", path); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s with upstream down: %d %s, want 503", path, resp.StatusCode, body)
		}
	}
	// What is linked is still served from the store.
	if resp, body := f.do(t, "GET", "/v2/library/real/manifests/"+mdgst.String()); resp.StatusCode != 200 {
		t.Errorf("linked manifest with upstream down: %d %s", resp.StatusCode, body)
	}
}

// A digest carried by many repositories has their overrides read at once;
// a deny on any one of them still refuses it under the others.
func TestDenyAmongManyLinkedNames(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	img := testregistry.CleanImage("popular")
	mdgst := f.hub.Push(t, "library/real", "1", img)
	path := "/v2/library/real/manifests/" + mdgst.String()
	if resp, body := f.do(t, "GET", path); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for i := range gate.ManyLinks + 2 {
		if err := f.store.PutLink(ctx, fmt.Sprintf("docker.io/team/app-%d", i), mdgst); err != nil {
			t.Fatal(err)
		}
	}
	if resp, body := f.do(t, "GET", path); resp.StatusCode != 200 {
		t.Fatalf("many names, none refused: %d %s", resp.StatusCode, body)
	}
	o := storage.Override{Subject: "docker.io/team/app-3", Action: storage.Deny, Reason: "compromised", Actor: "admin", Time: time.Now()}
	if err := f.store.PutOverride(ctx, o); err != nil {
		t.Fatal(err)
	}
	resp, body := f.do(t, "GET", path)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("one of many names denied: %d %s", resp.StatusCode, body)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "docker.io/team/app-3") || !strings.Contains(msg, "compromised") {
		t.Fatalf("message %q", msg)
	}
}

// A blob no manifest has named is scanned as an artifact, and refused if
// the same bytes are blocked in any other context.
func TestBareBlobRefusedWhenBlockedInAnotherContext(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	clean := testregistry.Layer(testregistry.File{Path: "etc/motd", Data: []byte("hello")})
	d := f.hub.PushBlob(t, "library/bare", clean)
	other := f.hub.PushBlob(t, "library/bare", testregistry.Layer(testregistry.File{Path: "etc/issue", Data: []byte("welcome")}))

	if resp, body := f.do(t, "GET", "/v2/library/bare/blobs/"+other.String()); resp.StatusCode != 200 || digest.FromBytes(body) != other {
		t.Fatalf("a clean bare blob: %d", resp.StatusCode)
	}
	if v := waitVerdict(t, f, other, storage.ContextArtifact); v.Status != storage.StatusClean {
		t.Fatalf("bare blob scanned as an artifact: %s", v.Status)
	}

	v := storage.Verdict{Digest: d, RulesetID: f.srv.gate.Scanner().RulesetID(), Context: storage.ContextConfig, Status: storage.StatusBlocked,
		Findings: []storage.Finding{{Rule: "MinerInImageConfig", Category: "miner", Severity: "high", Path: "config:Entrypoint", Layer: d}}}
	if err := f.store.PutVerdict(ctx, v); err != nil {
		t.Fatal(err)
	}
	resp, body := f.do(t, "GET", "/v2/library/bare/blobs/"+d.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bare blob blocked as a config: %d %s", resp.StatusCode, body)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "MinerInImageConfig") {
		t.Fatalf("message %q", msg)
	}
}
