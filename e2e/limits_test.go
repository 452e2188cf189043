package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// Docker Hub answering 429 (pull limit reached): images pullgate already
// has keep pulling, on the last known tag mapping; a cold image gets the
// 429 with upstream's Retry-After passed on, never a fallback-inducing 5xx.
func TestUpstreamRateLimitedCachedImagesStillPull(t *testing.T) {
	hub := testregistry.Start(t)
	cachedImg := harmlessImage("cached")
	cached := hub.Push(t, "library/e2e-cached", "1", cachedImg)
	cold := hub.Push(t, "library/e2e-cold", "1", harmlessImage("cold"))
	// A short tag TTL makes every pull ask upstream for the tag again.
	cfg := writeTemp(t, "pullgate.yaml", "gate:\n  tag_ttl: 1ms\n")
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}, Extra: []string{"--config", cfg}})
	d := SharedDockerd(t, DockerdOptions{})
	ref := pg.Addr() + "/library/e2e-cached:1"
	if out, err := d.Pull(pullCtx(t), ref); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if err := d.RemoveImage(ref); err != nil {
		t.Fatal(err)
	}

	limited := testregistry.Fault{Status: http.StatusTooManyRequests, RetryAfter: 42 * time.Second}
	hub.Fault(cached, limited)
	hub.Fault(cold, limited)
	heads := hub.ManifestHeads("library/e2e-cached", "1")
	if out, err := d.Pull(pullCtx(t), ref); err != nil {
		t.Fatalf("pull of a cached image while upstream answers 429: %v\n%s", err, out)
	}
	if hub.ManifestHeads("library/e2e-cached", "1") == heads {
		t.Error("pullgate did not ask upstream for the tag (the test's premise)")
	}
	if !strings.Contains(pg.Log(), "serving last known tag") {
		t.Error("pullgate did not log that it served the last known tag")
	}
	if n := upstreamBlobGets(hub, cachedImg); n != len(cachedImg.Layers) {
		t.Errorf("%d layer fetches, want %d: the second pull went upstream", n, len(cachedImg.Layers))
	}

	resp, err := http.Get(pg.URL() + "/v2/library/e2e-cold/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "42" {
		t.Errorf("cold image while rate-limited: %d, Retry-After %q; want 429 and 42", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	out, err := d.Pull(pullCtx(t), pg.Addr()+"/library/e2e-cold:1")
	if err == nil || !strings.Contains(out, "toomanyrequests") {
		t.Errorf("docker pull of a cold image while rate-limited: %v\n%s", err, out)
	}
}
