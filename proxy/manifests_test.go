package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

func TestIndexServedAndPlatformGated(t *testing.T) {
	f := newFixture(t)
	good := f.hub.Push(t, "library/multi", "", testregistry.CleanImage("amd64"))
	bad := f.hub.Push(t, "library/multi", "", testregistry.MinerImage("miner"))
	idx := f.hub.PushIndex(t, "library/multi", "1", map[string]digest.Digest{"linux/amd64": good, "linux/arm64": bad})
	resp, _ := f.do(t, "GET", "/v2/library/multi/manifests/1")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != idx.String() {
		t.Fatalf("index: %d", resp.StatusCode)
	}
	// Serving the index pre-scans both platforms in the background.
	testsync.WaitFor(t, 20*time.Second, "both platforms to be prefetched", func() bool {
		_, errGood := f.store.Verdict(context.Background(), digest.FromBytes(testregistry.CleanImage("amd64").Layers[0]), f.srv.gate.Scanner().RulesetID(), storage.ContextLayer)
		_, errBad := f.store.Verdict(context.Background(), digest.FromBytes(testregistry.MinerImage("miner").Layers[2]), f.srv.gate.Scanner().RulesetID(), storage.ContextLayer)
		return errGood == nil && errBad == nil
	})
	if resp, _ := f.do(t, "GET", "/v2/library/multi/manifests/"+good.String()); resp.StatusCode != 200 {
		t.Fatalf("clean platform: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/multi/manifests/"+bad.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner platform: %d", resp.StatusCode)
	}
}

func TestTagsResolvedByHeadAndCached(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.TagTTL = time.Hour })
	f.hub.Push(t, "library/tagged", "1", testregistry.CleanImage("tag"))
	head := func() {
		if resp, _ := f.do(t, "HEAD", "/v2/library/tagged/manifests/1"); resp.StatusCode != 200 {
			t.Fatalf("HEAD %d", resp.StatusCode)
		}
	}
	head()
	first := f.hub.ManifestHeads("library/tagged", "1") // the token challenge may add one
	if first == 0 {
		t.Fatal("the tag was not resolved upstream")
	}
	head()
	head()
	if n := f.hub.ManifestHeads("library/tagged", "1"); n != first {
		t.Errorf("%d more upstream HEADs for one tag within its TTL", n-first)
	}
	if n := f.hub.ManifestGets("library/tagged", "1"); n != 0 {
		t.Errorf("%d upstream GETs by tag: tags must resolve by HEAD", n)
	}
}

func TestLastKnownTagServedWhileUpstreamIsDown(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.TagTTL = time.Nanosecond })
	f.hub.Push(t, "library/steady", "1", testregistry.CleanImage("steady"))
	if resp, _ := f.do(t, "GET", "/v2/library/steady/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("first pull: %d", resp.StatusCode)
	}
	f.hub.SetDown(true)
	if resp, body := f.do(t, "GET", "/v2/library/steady/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("cached image while upstream is down: %d %s", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, "GET", "/v2/library/never-seen/manifests/1"); resp.StatusCode == 200 {
		t.Fatal("an image never seen was served while upstream is down")
	}
}

func TestTagList(t *testing.T) {
	f := newFixture(t)
	f.hub.Push(t, "library/listed", "a", testregistry.CleanImage("a"))
	f.hub.Push(t, "library/listed", "b", testregistry.CleanImage("b"))
	resp, body := f.do(t, "GET", "/v2/listed/tags/list")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var tl struct {
		Name string
		Tags []string
	}
	if err := json.Unmarshal(body, &tl); err != nil || len(tl.Tags) != 2 {
		t.Fatalf("%s %v", body, err)
	}
}

func TestRelativeLink(t *testing.T) {
	for in, want := range map[string]string{
		`<https://registry-1.docker.io/v2/library/a/tags/list?last=b&n=1>; rel="next"`: `</v2/library/a/tags/list?last=b&n=1>; rel="next"`,
		`</v2/library/a/tags/list?last=b&n=1>; rel="next"`:                             `</v2/library/a/tags/list?last=b&n=1>; rel="next"`,
		`<https://evil.example/elsewhere>; rel="next"`:                                 ``,
		`garbage`: ``,
	} {
		if got := relativeLink(in); got != want {
			t.Errorf("relativeLink(%q) = %q, want %q", in, got, want)
		}
	}
}

// A deny or the known-bad list on an index's own digest refuses the index
// (the digest a person pulls by), by tag and by digest; an allow on it
// serves it as before, with its entries still judged one by one.
func TestIndexDigestDeniedOrKnownBad(t *testing.T) {
	cases := []struct {
		name     string
		override storage.Action // on the index digest, if not ""
		knownBad bool           // the index digest on the known-bad list
		status   int
		want     string
	}{
		{"operator deny", storage.Deny, false, http.StatusForbidden, "denied by operator admin"},
		{"known-bad list", "", true, http.StatusForbidden, "is on the known-bad list"},
		{"operator allow", storage.Allow, false, http.StatusOK, ""},
		{"nothing on it", "", false, http.StatusOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			known := &laterDigest{}
			f := newFixture(t, func(o *Options, _ *scanner.Options) { o.KnownBad = known })
			good := f.hub.Push(t, "library/idx", "", testregistry.CleanImage("idx"))
			idx := f.hub.PushIndex(t, "library/idx", "1", map[string]digest.Digest{"linux/amd64": good})
			if c.knownBad {
				known.d = idx
			}
			if c.override != "" {
				f.override(t, idx.String(), c.override)
			}
			for _, ref := range []string{"1", idx.String()} {
				body := f.wantStatus(t, "/v2/library/idx/manifests/"+ref, c.status)
				if c.want == "" {
					continue
				}
				if _, msg := ociError(t, body); !strings.Contains(msg, c.want) || !strings.Contains(msg, idx.String()) {
					t.Fatalf("%s: message %q does not say %q of %s", ref, msg, c.want, idx)
				}
			}
			// The platform's own manifest is judged on its own content.
			f.wantStatus(t, "/v2/library/idx/manifests/"+good.String(), http.StatusOK)
		})
	}
}

// laterDigest is a known-bad list of one digest, set once it is known.
type laterDigest struct{ d digest.Digest }

func (l *laterDigest) Has(d digest.Digest) bool { return l.d != "" && d == l.d }
