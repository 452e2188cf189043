package e2e

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// harmlessImage is a tiny image dockerd can register: one gzip layer.
func harmlessImage(content string) testregistry.Image {
	return testregistry.Image{Layers: [][]byte{testregistry.Layer(
		testregistry.File{Path: "etc/pullgate-e2e.txt", Data: []byte(content)},
		testregistry.File{Path: "usr/local/bin/hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hello\n")},
	)}}
}

// TestHarnessIsolated proves the suite cannot reach beyond loopback.
func TestHarnessIsolated(t *testing.T) {
	if err := checkIsolated(); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	if c, err := d.Dial("tcp", "1.1.1.1:443"); err == nil {
		c.Close()
		t.Fatal("dialing 1.1.1.1:443 succeeded inside the e2e namespace")
	}
	if _, err := net.DefaultResolver.LookupHost(context.Background(), "registry-1.docker.io"); err == nil {
		t.Fatal("registry-1.docker.io resolved inside the e2e namespace")
	}
}

// TestHarnessDockerdPullsThroughMirror uses the test registry itself as
// dockerd's mirror (standing in for pullgate): a short Docker Hub name goes
// to the mirror as library/<name>, and an explicit host is pulled directly.
func TestHarnessDockerdPullsThroughMirror(t *testing.T) {
	reg := testregistry.Start(t)
	mirrored := reg.Push(t, "library/pgharness", "v1", harmlessImage("mirrored"))
	direct := reg.Push(t, "library/pgdirect", "v1", harmlessImage("direct"))

	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{reg.URL()}, Insecure: []string{reg.Host()}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, err := d.Pull(ctx, "pgharness:v1")
	if err != nil {
		t.Fatalf("pull through mirror: %v\n%s", err, d.Log())
	}
	if !strings.Contains(out, mirrored.String()) {
		t.Errorf("pull output does not name digest %s:\n%s", mirrored, out)
	}
	digests, err := d.RepoDigests("pgharness:v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "pgharness@" + mirrored.String(); !slices.Contains(digests, want) {
		t.Errorf("RepoDigests = %q, want %q", digests, want)
	}
	if reg.ManifestGets("library/pgharness", "v1")+reg.ManifestHeads("library/pgharness", "v1") == 0 {
		t.Error("the mirror never saw a manifest request for library/pgharness:v1")
	}

	out, err = d.Pull(ctx, reg.Host()+"/library/pgdirect:v1")
	if err != nil {
		t.Fatalf("pull by explicit host: %v", err)
	}
	digests, err = d.RepoDigests(reg.Host() + "/library/pgdirect:v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.Host() + "/library/pgdirect@" + direct.String(); !slices.Contains(digests, want) {
		t.Errorf("RepoDigests = %q, want %q (output %s)", digests, want, out)
	}

	if err := d.RemoveImage("pgharness:v1"); err != nil {
		t.Fatal(err)
	}
	if d.HasImage("pgharness:v1") {
		t.Error("image still present after RemoveImage")
	}
}

// TestHarnessMirrorFailureFallsBackAndFailsFast checks the premise of the
// suite: when the mirror refuses, dockerd falls back to Docker Hub, which is
// unreachable here, so the pull fails quickly and the real Docker Hub is
// never contacted.
func TestHarnessMirrorFailureFallsBackAndFailsFast(t *testing.T) {
	reg := testregistry.Start(t)
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{reg.URL()}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	out, err := d.Pull(ctx, "pgmissing:v1")
	if err == nil {
		t.Fatalf("pull of an image nobody has succeeded:\n%s", out)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("failed pull took %s", el)
	}
	if !strings.Contains(out, "registry-1.docker.io") {
		t.Errorf("expected dockerd to fall back to registry-1.docker.io, got:\n%s", out)
	}
	if reg.ManifestGets("library/pgmissing", "v1")+reg.ManifestHeads("library/pgmissing", "v1") == 0 {
		t.Error("dockerd never asked the mirror")
	}
	if log := d.Log(); !strings.Contains(log, "Attempting next endpoint for pull after error: manifest unknown") {
		t.Errorf("dockerd's log does not show the mirror's refusal:\n%s", log)
	}
}

// TestHarnessOwnDockerd starts a private dockerd (not the shared one).
func TestHarnessOwnDockerd(t *testing.T) {
	reg := testregistry.Start(t)
	dgst := reg.Push(t, "library/pgown", "1", harmlessImage("own"))
	d := StartDockerd(t, DockerdOptions{Mirrors: []string{reg.URL()}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := d.Pull(ctx, "pgown:1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	digests, err := d.RepoDigests("pgown:1")
	if err != nil || !slices.Contains(digests, "pgown@"+dgst.String()) {
		t.Fatalf("RepoDigests = %q, %v", digests, err)
	}
}

// TestHarnessPullgate starts the pullgate binary, restarts it on the same
// port and data directory, and stops it.
func TestHarnessPullgate(t *testing.T) {
	reg := testregistry.Start(t)
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": reg.URL()}})
	get := func() int {
		resp, err := http.Get(pg.URL() + "/v2/")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("GET /v2/ = %d", code)
	}
	dataDir := pg.DataDir()
	pg.Restart()
	if code := get(); code != http.StatusOK || pg.DataDir() != dataDir {
		t.Fatalf("after restart: GET /v2/ = %d, data dir %s (was %s)", code, pg.DataDir(), dataDir)
	}
	pg.Stop()
	testsync.WaitFor(t, 5*time.Second, "pullgate to stop listening", func() bool { return get() == 0 })
	if pg.Running() {
		t.Error("pullgate still running after Stop")
	}
}
