package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// Every client pulls through pullgate configured with the snippets shipped
// in configs/, from two upstreams: Docker Hub's stand-in (anonymous token
// auth) and "ghcr.io", a second registry that requires credentials, which
// pullgate reads from a Docker config.json.

const (
	ghcrUser   = "ghcr-bot"
	ghcrSecret = "s3cret-ghcr-password-4711"
)

// twoUpstreams is a pullgate in front of hub (docker.io) and ghcr (ghcr.io,
// credentials from credentials_file).
type twoUpstreams struct {
	hub, ghcr *testregistry.Registry
	pg        *Pullgate
}

func startTwoUpstreams(t *testing.T) *twoUpstreams {
	t.Helper()
	u := &twoUpstreams{
		hub:  testregistry.Start(t),
		ghcr: testregistry.Start(t, testregistry.WithCredentials(ghcrUser, ghcrSecret)),
	}
	auth := base64.StdEncoding.EncodeToString([]byte(ghcrUser + ":" + ghcrSecret))
	creds := writeTemp(t, "config.json", `{"auths":{"ghcr.io":{"auth":"`+auth+`"}}}`)
	// Every client held: these tests are the hold mode's contract (what
	// each client shows of a refused manifest); stream_test.go has the
	// modes each client is given.
	cfg := writeTemp(t, "pullgate.yaml", fmt.Sprintf("upstreams:\n  ghcr.io:\n    url: %q\n    credentials_file: %q\n    allow_networks: [127.0.0.0/8]\n", u.ghcr.URL(), creds)+allHold)
	u.pg = StartPullgate(t, PullgateOptions{
		Upstreams: map[string]string{"docker.io": u.hub.URL()},
		Extra:     []string{"--config", cfg},
	})
	t.Cleanup(func() {
		if log := u.pg.Log(); strings.Contains(log, ghcrSecret) || strings.Contains(log, auth) {
			t.Error("pullgate logged the ghcr.io credentials")
		}
		for _, r := range u.ghcr.TokenRequests() {
			if r.User != ghcrUser {
				t.Errorf("a token request to ghcr.io without its credentials: %+v", r)
			}
		}
	})
	return u
}

func clientCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// containerd via hosts.toml: ?ns= arrives and routes to the right
// upstream; an explicit path prefix routes too; a refusal falls back to the
// registry with the fallback snippet and stops at pullgate with the
// enforcing one.
func TestContainerdPullsThroughHostsToml(t *testing.T) {
	u := startTwoUpstreams(t)
	hubImg, ghImg := harmlessImage("ctr-hub"), harmlessImage("ctr-ghcr")
	hubDgst := u.hub.Push(t, "library/e2e-ctr", "1", hubImg)
	ghDgst := u.ghcr.Push(t, "team/app", "1", ghImg)
	minerDgst := u.hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))
	rec := newRecorder(t, u.pg.URL())
	c := StartContainerd(t)
	ctx := clientCtx(t)
	fallback := hostsDir(t, "fallback", rec.Addr(), "docker.io", "ghcr.io")

	if out, err := c.Pull(ctx, fallback, "docker.io/library/e2e-ctr:1"); err != nil {
		t.Fatalf("ctr pull through pullgate: %v\n%s", err, out)
	}
	if len(rec.seen("/v2/library/e2e-ctr/manifests/1?ns=docker.io")) == 0 {
		t.Fatalf("containerd did not send ?ns=docker.io; requests: %q", rec.seen("/v2/"))
	}
	if n := upstreamBlobGets(u.hub, hubImg); n != len(hubImg.Layers) {
		t.Errorf("%d layer fetches from docker.io, want %d", n, len(hubImg.Layers))
	}

	if out, err := c.Pull(ctx, fallback, "ghcr.io/team/app:1"); err != nil {
		t.Fatalf("ctr pull of ghcr.io through pullgate: %v\n%s", err, out)
	}
	if len(rec.seen("/v2/team/app/manifests/1?ns=ghcr.io")) == 0 {
		t.Fatalf("containerd did not send ?ns=ghcr.io; requests: %q", rec.seen("/v2/"))
	}
	if n := upstreamBlobGets(u.ghcr, ghImg); n != len(ghImg.Layers) {
		t.Errorf("%d layer fetches from ghcr.io, want %d (routed elsewhere?)", n, len(ghImg.Layers))
	}

	// An explicit registry prefix in the path, no hosts.toml at all.
	if out, err := c.Pull(ctx, t.TempDir(), u.pg.Addr()+"/ghcr.io/team/app:1", "--plain-http"); err != nil {
		t.Fatalf("ctr pull by path prefix: %v\n%s", err, out)
	}
	images, err := c.Ctr(ctx, "images", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"docker.io/library/e2e-ctr:1", "ghcr.io/team/app:1", u.pg.Addr() + "/ghcr.io/team/app:1", hubDgst.String(), ghDgst.String()} {
		if !strings.Contains(images, want) {
			t.Errorf("ctr images ls lacks %s:\n%s", want, images)
		}
	}

	// Refused with the fallback snippet: containerd goes on to Docker Hub
	// (unreachable here), so the image is not pulled, but only the egress
	// firewall makes that true in production.
	out, err := c.Pull(ctx, fallback, "docker.io/someone/miner:1")
	if err == nil {
		t.Fatalf("pulled the miner:\n%s", out)
	}
	if !strings.Contains(out, "registry-1.docker.io") {
		t.Errorf("expected containerd to fall back to registry-1.docker.io:\n%s", out)
	}
	testsync.WaitFor(t, 10*time.Second, "pullgate to log the refusal", func() bool { return strings.Contains(u.pg.Log(), minerDgst.String()) })

	// The enforcing snippet: pullgate is the only host.
	enforce := hostsDir(t, "enforce", rec.Addr(), "docker.io", "ghcr.io")
	out, err = c.Pull(ctx, enforce, "docker.io/someone/miner:1")
	if err == nil {
		t.Fatalf("pulled the miner:\n%s", out)
	}
	if strings.Contains(out, "registry-1.docker.io") || !strings.Contains(out, "403 Forbidden") {
		t.Errorf("want a 403 from pullgate and no fallback:\n%s", out)
	}
	if out, err := c.Pull(ctx, enforce, "ghcr.io/team/app:1"); err != nil {
		t.Fatalf("ctr pull of ghcr.io with the enforcing snippet: %v\n%s", err, out)
	}
	images, err = c.Ctr(ctx, "images", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr images ls: %v", err)
	}
	if strings.Contains(images, "miner") {
		t.Fatalf("containerd has the miner image:\n%s", images)
	}
	// Positive control: the listing names the image pulled just before.
	if !strings.Contains(images, "ghcr.io/team/app:1") {
		t.Fatalf("ctr images ls -q lacks ghcr.io/team/app:1, so the miner's absence proves nothing:\n%s", images)
	}
}

// skopeo with registries.conf: the mirror snippet pulls through pullgate
// (docker.io, and ghcr.io by path prefix), and a refusal reaches the user:
// as "Mirrors also failed" with the fallback snippet, directly without.
func TestSkopeoThroughRegistriesConf(t *testing.T) {
	u := startTwoUpstreams(t)
	hubImg, ghImg := harmlessImage("sk-hub"), harmlessImage("sk-ghcr")
	u.hub.Push(t, "library/e2e-skopeo", "1", hubImg)
	u.ghcr.Push(t, "team/tool", "2", ghImg)
	minerDgst := u.hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))
	ctx := clientCtx(t)
	mirror := writeTemp(t, "registries.conf", configSnippet(t, "registries.conf", u.pg.Addr()))
	direct := writeTemp(t, "registries.conf", configSnippet(t, "registries.conf.no-fallback", u.pg.Addr())+
		"\n[[registry]]\nprefix = \"quay.io\"\nlocation = \""+u.pg.Addr()+"/quay.io\"\ninsecure = true\n")

	for _, c := range []struct {
		conf, ref string
		reg       *testregistry.Registry
		img       testregistry.Image
	}{
		{mirror, "docker.io/library/e2e-skopeo:1", u.hub, hubImg},
		{mirror, "ghcr.io/team/tool:2", u.ghcr, ghImg},
		{direct, "e2e-skopeo:1", u.hub, hubImg},
	} {
		dest := "oci:" + filepath.Join(t.TempDir(), "layout") + ":x"
		if out, err := skopeo(ctx, c.conf, "copy", "docker://"+c.ref, dest); err != nil {
			t.Fatalf("skopeo copy %s: %v\n%s", c.ref, err, out)
		}
		if n := upstreamBlobGets(c.reg, c.img); n != len(c.img.Layers) {
			t.Errorf("%s: %d layer fetches upstream, want %d (each once)", c.ref, n, len(c.img.Layers))
		}
	}

	want := "denied: pullgate: docker.io/someone/miner@" + minerDgst.String()
	out, err := skopeo(ctx, mirror, "inspect", "docker://docker.io/someone/miner:1")
	if err == nil || !strings.Contains(out, "Mirrors also failed") || !strings.Contains(out, want) {
		t.Errorf("with the mirror snippet, want %q inside \"Mirrors also failed\": %v\n%s", want, err, out)
	}
	out, err = skopeo(ctx, direct, "inspect", "docker://docker.io/someone/miner:1")
	if err == nil || strings.Contains(out, "Mirrors also failed") || !strings.Contains(out, want) || !strings.Contains(out, "file /usr/bin/kworker matched") {
		t.Errorf("with the no-fallback snippet, want %q: %v\n%s", want, err, out)
	}

	// A registry pullgate is not configured for is refused, never fetched.
	out, err = skopeo(ctx, direct, "inspect", "docker://quay.io/someone/thing:1")
	if err == nil || !strings.Contains(out, `registry \"quay.io\" is not configured here`) && !strings.Contains(out, `registry "quay.io" is not configured here`) {
		t.Errorf("quay.io should be refused as not configured: %v\n%s", err, out)
	}
}

// podman with the no-fallback registries.conf: a clean image pulls, a
// refused one fails with pullgate's reason.
func TestPodmanNoFallback(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is required (apt-get install podman): %v", err)
	}
	u := startTwoUpstreams(t)
	img := harmlessImage("podman")
	want := u.hub.Push(t, "library/e2e-podman", "1", img)
	minerDgst := u.hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))
	conf := writeTemp(t, "registries.conf", configSnippet(t, "registries.conf.no-fallback", u.pg.Addr()))
	dir, err := os.MkdirTemp("/tmp", "pgp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmountUnder(dir); os.RemoveAll(dir) })
	podman := func(args ...string) (string, error) {
		cmd := exec.CommandContext(clientCtx(t), "podman", append([]string{
			"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
		}, args...)...)
		cmd.Env = append(withoutProxyEnv(os.Environ()), "CONTAINERS_REGISTRIES_CONF="+conf, "XDG_RUNTIME_DIR="+filepath.Join(dir, "xdg"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := podman("pull", "e2e-podman:1"); err != nil {
		t.Fatalf("podman pull: %v\n%s", err, out)
	}
	out, err := podman("image", "inspect", "--format", "{{.Digest}}", "docker.io/library/e2e-podman:1")
	if err != nil || strings.TrimSpace(out) != want.String() {
		t.Fatalf("podman has digest %q (%v), want %s", out, err, want)
	}
	out, err = podman("pull", "docker.io/someone/miner:1")
	if err == nil || !strings.Contains(out, "denied: pullgate: docker.io/someone/miner@"+minerDgst.String()) {
		t.Fatalf("podman pull of the miner: %v\n%s", err, out)
	}
}
