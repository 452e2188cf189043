package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// Real clients against pullgate's gate modes, each in the mode it is
// given: a clean cold image reaches a streaming client while it is still
// being fetched and scanned, and a miner image reaches no client, whatever
// it retries, with the reason shown where the client prints one.
//
// The watched layer's upstream holds its last 256 KiB back until the test
// lets them go, once the client is where its mode puts it: holding half of
// the layer (stream), waiting on the image config (a client that asks for
// the config before any layer), or waiting on the manifest (hold). The
// order is then certain, not a race.

// upstreamTail is more than pullgate's own held tail (64 KiB), so that a
// client can hold half of the layer only if pullgate streamed it.
const upstreamTail = 256 << 10

// Gate configurations: the per-client modes the client measurements chose
// (docs/architecture.md, "Clients and gate modes"), every client streaming,
// and every client held. Each names every prefix: a configuration's
// agent_modes is merged into the defaults, so a prefix left out keeps its
// default mode.
const (
	chosenModes = "gate:\n  mode: hold\n  agent_modes:\n" +
		"    \"docker/\": stream\n    \"containerd/\": stream\n    \"containers/\": hold\n    \"skopeo/\": hold\n"
	allStream = "gate:\n  mode: stream\n  agent_modes:\n" +
		"    \"docker/\": stream\n    \"containerd/\": stream\n    \"containers/\": stream\n    \"skopeo/\": stream\n"
	allHold = "gate:\n  mode: hold\n  agent_modes:\n" +
		"    \"docker/\": hold\n    \"containerd/\": hold\n    \"containers/\": hold\n    \"skopeo/\": hold\n"
)

// flow is where a client waits while the upstream holds the layer's tail.
type flow int

const (
	// streams: the client receives the layer as pullgate ingests it.
	streams flow = iota
	// configFirst: the client asks for the image config before any layer,
	// and the config waits for the image's decision (podman).
	configFirst
	// held: the manifest waits for the image's decision (hold mode).
	held
)

// modeCase is one client under one gate configuration.
type modeCase struct {
	clientSetup
	config string
	flow   flow
}

func startModePullgate(t *testing.T, upstream, yaml string) *Pullgate {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "pullgate.yaml")
	writeTestFile(t, cfg, yaml)
	return StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": upstream}, Extra: []string{"--config", cfg}})
}

// bigMinerImage is harmlessImage with a last layer of about 1 MiB that
// carries the stand-in XMRig at /usr/bin/kworker.
func bigMinerImage(note string) testregistry.Image {
	img := harmlessImage(note)
	img.Layers = append(img.Layers, testregistry.Layer(
		testregistry.File{Path: "usr/local/lib/pullgate-e2e.bin", Mode: 0o644, Data: samples.Filler(1 << 20)},
		testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()},
	))
	return img
}

// pullResult is a pull that ran in the background.
type pullResult struct {
	out  string
	err  error
	took time.Duration
}

// pausedPull is a client pulling name through a tap in front of pullgate,
// whose upstream holds the last layer of img back.
type pausedPull struct {
	hub   *testregistry.Registry
	up    *pausingUpstream
	pg    *Pullgate
	tp    *tap
	p     puller
	layer digest.Digest
	size  int64
	built *testregistry.Built
}

func startPausedPull(t *testing.T, c modeCase, repo string, img testregistry.Image) *pausedPull {
	t.Helper()
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	last := img.Layers[len(img.Layers)-1]
	pp := &pausedPull{hub: testregistry.Start(t), layer: digest.FromBytes(last), size: int64(len(last)), built: built}
	pp.hub.Push(t, repo, "1", img)
	// Throttled as a real upstream is: the client's bytes arrive as
	// pullgate's do.
	pp.hub.Fault(pp.layer, testregistry.Fault{BytesPerSecond: 4 << 20})
	pp.up = startPausingUpstream(t, pp.hub, pp.layer, upstreamTail)
	pp.pg = startModePullgate(t, pp.up.URL(), c.config)
	pp.tp = startTap(t, pp.pg.URL())
	pp.p = c.setup(t, pp.tp.Addr(), pp.hub.Host())
	return pp
}

// run pulls name, waits until the client is where c.flow puts it while the
// upstream holds the layer's tail, checks that nothing of the layer went
// out where it must not have, lets the tail go, and returns the pull.
func (pp *pausedPull) run(t *testing.T, ctx context.Context, c modeCase, name string) pullResult {
	t.Helper()
	ch := make(chan pullResult, 1)
	go func() {
		start := time.Now()
		out, err := pp.p.Pull(ctx, name)
		ch <- pullResult{out: out, err: err, took: time.Since(start)}
	}()
	var ended *pullResult
	there := testsync.Until(time.Minute, func() bool {
		select {
		case r := <-ch:
			ended = &r
			return true
		default:
		}
		most, _ := pp.tp.MostSent(pp.layer)
		switch c.flow {
		case streams:
			return most >= pp.size/2
		case configFirst:
			return pp.tp.Pending("/blobs/" + pp.built.ConfigDigest.String())
		default:
			return pp.tp.Pending("/manifests/")
		}
	})
	most, _ := pp.tp.MostSent(pp.layer)
	pp.up.Release()
	if !there || ended != nil {
		t.Fatalf("the client never got where mode %d puts it while upstream held the layer's tail (pull ended: %+v); layer requests %q", c.flow, ended, pp.tp.Summary(pp.layer))
	}
	if c.flow != streams && most > 0 {
		t.Fatalf("%d bytes of the layer went out before its upstream had sent it whole: %q", most, pp.tp.Summary(pp.layer))
	}
	return <-ch
}

// TestStreamCleanColdPull: each client pulls a clean cold image, from a
// throttled upstream, in its mode, and ends with the right digest. A
// streaming client has half of the big layer before the upstream has sent
// it whole, so before any verdict.
func TestStreamCleanColdPull(t *testing.T) {
	for _, c := range []modeCase{
		{clientSetup{"dockerd registry-mirrors", dockerMirror}, chosenModes, streams},
		{clientSetup{"ctr hosts.toml enforce", ctrEnforce}, chosenModes, streams},
		{clientSetup{"podman no-fallback", podmanNoFallback}, chosenModes, held},
		{clientSetup{"skopeo copy no-fallback", skopeoNoFallback}, chosenModes, held},
		{clientSetup{"podman no-fallback, stream", podmanNoFallback}, allStream, configFirst},
		{clientSetup{"skopeo copy no-fallback, stream", skopeoNoFallback}, allStream, streams},
	} {
		t.Run(c.name, func(t *testing.T) {
			pp := startPausedPull(t, c, "library/e2e-stream", bigLayerImage("clean "+c.name, 1<<20))
			ctx := pullCtx(t)
			r := pp.run(t, ctx, c, "library/e2e-stream:1")
			if r.err != nil {
				t.Fatalf("pull: %v\n%s", r.err, r.out)
			}
			if ok, got := pp.p.Has(ctx, "library/e2e-stream:1"); !ok || got != pp.built.Digest {
				t.Fatalf("the client holds the image: %v, with digest %q, want %s", ok, got, pp.built.Digest)
			}
			if n := pp.hub.CDNGets(pp.layer); n != 1 {
				t.Errorf("the layer was fetched upstream %d times, want once", n)
			}
		})
	}
}

// minerCase is a client pulling the miner image, and what it must show:
// first when the refusal comes while the image is pulled, then when it
// pulls again (the stored verdict refuses the manifest itself).
type minerCase struct {
	modeCase
	first, again string // in what the user sees; "%m" is the manifest digest, "%h" pullgate's host:port
}

// TestStreamMinerRefused: each client pulls an image whose big layer
// carries a miner. It gets no image, no response carries the layer's
// complete bytes, and the client shows what the table says.
func TestStreamMinerRefused(t *testing.T) {
	const reason = "denied: pullgate: docker.io/someone/miner@%m blocked: layer "
	for _, c := range []minerCase{
		{modeCase{clientSetup{"dockerd explicit host", dockerExplicit}, chosenModes, streams},
			"error pulling image configuration: download failed after attempts=1: " + reason, "Error response from daemon: pull access denied for %h/someone/miner, repository does not exist or may require 'docker login': " + reason},
		// dockerd goes on to Docker Hub; the reason is in its log.
		{modeCase{clientSetup{"dockerd registry-mirrors", dockerMirror}, chosenModes, streams},
			`Get "https://registry-1.docker.io/v2/"`, `Get "https://registry-1.docker.io/v2/"`},
		{modeCase{clientSetup{"ctr hosts.toml enforce", ctrEnforce}, chosenModes, streams},
			"403 Forbidden - Server message: " + reason, "failed with status code [manifests 1]: 403 Forbidden"},
		{modeCase{clientSetup{"podman no-fallback", podmanNoFallback}, chosenModes, held}, reason, reason},
		{modeCase{clientSetup{"skopeo copy no-fallback", skopeoNoFallback}, chosenModes, held}, reason, reason},
		// What podman and skopeo would show if they streamed.
		{modeCase{clientSetup{"podman no-fallback, stream", podmanNoFallback}, allStream, configFirst},
			"Error: parsing image configuration: Error fetching blob: invalid status code from registry 403 (Forbidden)", reason},
		{modeCase{clientSetup{"skopeo copy no-fallback, stream", skopeoNoFallback}, allStream, streams},
			"writing blob: happened during read: unexpected EOF", reason},
	} {
		t.Run(c.name, func(t *testing.T) {
			pp := startPausedPull(t, c.modeCase, "someone/miner", bigMinerImage("miner "+c.name))
			ctx := pullCtx(t)
			expand := strings.NewReplacer("%m", pp.built.Digest.String(), "%h", pp.tp.Addr()).Replace
			r := pp.run(t, ctx, c.modeCase, "someone/miner:1")
			t.Logf("first pull (%s): %s", r.took.Round(time.Millisecond), lastLine(r.out))
			if r.err == nil {
				t.Fatalf("pulled the miner:\n%s", r.out)
			}
			if !strings.Contains(r.out, expand(c.first)) {
				t.Errorf("the first pull shows\n%s\nwant it to contain %q", r.out, expand(c.first))
			}
			if ok, _ := pp.p.Has(ctx, "someone/miner:1"); ok {
				t.Fatal("the client holds the refused image")
			}
			if most, _ := pp.tp.MostSent(pp.layer); most >= pp.size {
				t.Fatalf("a response carried all %d bytes of the miner layer: %q", pp.size, pp.tp.Summary(pp.layer))
			}
			out, err := pp.p.Pull(ctx, "someone/miner:1")
			if err == nil || !strings.Contains(out, expand(c.again)) {
				t.Errorf("pulling again: %v\n%s\nwant it to contain %q", err, out, expand(c.again))
			}
			if log := pp.p.Log(); log != "" && !strings.Contains(log, expand(reason)) {
				t.Errorf("dockerd's log lacks the reason %q", expand(reason))
			}
		})
	}
}

// TestStreamFallback: the snippets that fall back to the registry itself
// (here a local origin) when pullgate refuses. Where a client falls back,
// it gets the miner image from the origin: only the egress firewall stops
// that (README, "Use it with …"). A client refused mid-pull does not fall
// back.
func TestStreamFallback(t *testing.T) {
	for _, c := range []struct {
		modeCase
		fallsBack bool
	}{
		// containerd tries the next host for each blob pullgate refuses,
		// the config's 403 and the cut layer's Range retry alike.
		{modeCase{clientSetup{"ctr hosts.toml fallback", ctrFallbackToOrigin}, chosenModes, streams}, true},
		{modeCase{clientSetup{"podman mirror", podmanMirrorToOrigin}, chosenModes, held}, true},
		{modeCase{clientSetup{"skopeo copy mirror", skopeoMirrorToOrigin}, chosenModes, held}, true},
		// containers/image picks its source at the manifest: a refusal
		// after it is final.
		{modeCase{clientSetup{"podman mirror, stream", podmanMirrorToOrigin}, allStream, configFirst}, false},
		{modeCase{clientSetup{"skopeo copy mirror, stream", skopeoMirrorToOrigin}, allStream, streams}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pp := startPausedPull(t, c.modeCase, "someone/miner", bigMinerImage("fallback "+c.name))
			ctx := pullCtx(t)
			r := pp.run(t, ctx, c.modeCase, "someone/miner:1")
			has, got := pp.p.Has(ctx, "someone/miner:1")
			// Blob GETs at the origin's registry endpoint: a client resuming
			// with Range is answered there, not redirected to the CDN.
			fetched := pp.hub.BlobGets(pp.layer)
			t.Logf("pull (%s): err %v, image %v %s, the origin asked for the miner layer %d times: %s", r.took.Round(time.Millisecond), r.err, has, got, fetched, lastLine(r.out))
			if most, _ := pp.tp.MostSent(pp.layer); most >= pp.size {
				t.Fatalf("pullgate sent all %d bytes of the miner layer: %q", pp.size, pp.tp.Summary(pp.layer))
			}
			testsync.WaitFor(t, 10*time.Second, "pullgate to log the block", func() bool { return strings.Contains(pp.pg.Log(), "decision=blocked") })
			if !c.fallsBack {
				if r.err == nil || has || fetched != 1 {
					t.Fatalf("want no fallback: err %v, image %v, the origin was asked for the layer %d times (pullgate's once)", r.err, has, fetched)
				}
				return
			}
			// pullgate fetched the layer once, the client's fallback again.
			if r.err != nil || !has || fetched < 2 {
				t.Fatalf("want the fallback to the origin: err %v, image %v, the origin was asked for the layer %d times, want more than pullgate's once\n%s", r.err, has, fetched, r.out)
			}
			if got != pp.built.Digest {
				t.Errorf("the image from the origin has digest %s, want %s", got, pp.built.Digest)
			}
		})
	}
}
