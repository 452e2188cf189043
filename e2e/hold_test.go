package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// A manifest whose layer is still being fetched and scanned: the Docker
// Engine, which has no response-header timeout and falls back to Docker
// Hub on any error, is held until the verdict and its pull succeeds; any
// other client is told to come back (429 with Retry-After) when the short
// hold runs out, and finds the verdict on its retry.
func TestStillScanningAnswerPerClient(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("slow")
	hub.Push(t, "library/e2e-slow", "1", img)
	slow := digest.FromBytes(img.Layers[1])
	hub.Fault(slow, testregistry.Fault{Delay: 4 * time.Second})
	cfg := filepath.Join(t.TempDir(), "pullgate.yaml")
	writeTestFile(t, cfg, allHold+"  hold: 1s\n  hold_docker: 2m\n  retry_after: 1s\n")
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}, Extra: []string{"--config", cfg}})

	// A containerd-like client is answered within its short hold.
	req, err := http.NewRequest(http.MethodGet, pg.URL()+"/v2/library/e2e-slow/manifests/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "containerd/v1.6.20")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// A 429 "still scanning" can only come from a hold that ran out while
	// the layer was still on its way: the short hold applied.
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("containerd while scanning: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// The Docker Engine is held through the scan; its pull just works.
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{pg.URL()}})
	if out, err := d.Pull(pullCtx(t), "e2e-slow:1"); err != nil {
		t.Fatalf("docker pull while scanning: %v\n%s", err, out)
	}
	if n := hub.CDNGets(slow); n != 1 {
		t.Errorf("the slow layer was fetched %d times", n)
	}
	if !strings.Contains(pg.Log(), "decision=pending") || !strings.Contains(pg.Log(), "decision=allowed") {
		t.Errorf("want a pending then an allowed decision in the log:\n%s", tail(pg.Log(), 10))
	}
}
