package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// Several replicas, multi-platform images and warming, against the
// binaries. The replica coordination (a Redis lock per ingest) and the
// index prefetch live in proxy/; these tests say what they must do.

// twoReplicas are two pullgate processes sharing Redis and one blob store.
func twoReplicas(t *testing.T, hub *testregistry.Registry, extra ...string) (*Pullgate, *Pullgate) {
	t.Helper()
	redis := redisserver.Start(t)
	dataDir := t.TempDir()
	opts := PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}, Redis: redis.URL(), DataDir: dataDir, Extra: extra}
	return StartPullgate(t, opts), StartPullgate(t, opts)
}

func scans(pgs ...*Pullgate) int {
	n := 0
	for _, pg := range pgs {
		n += strings.Count(pg.Log(), "msg=scanned")
	}
	return n
}

// Two replicas asked for the same cold image at the same time fetch and
// scan each blob once between them.
func TestReplicasFetchAndScanEachLayerOnce(t *testing.T) {
	hub := testregistry.Start(t)
	img := harmlessImage("replicas")
	img.Layers = append(img.Layers, testregistry.Layer(testregistry.File{Path: "srv/big.bin", Data: make([]byte, 2<<20)}))
	hub.Push(t, "library/e2e-replicas", "1", img)
	a, b := twoReplicas(t, hub)
	big := digest.FromBytes(img.Layers[1])
	release := make(chan struct{})
	hub.Fault(big, testregistry.Fault{Block: release})

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- httpPull(a.URL(), "library/e2e-replicas", "1", "replica-a") })
	testsync.WaitFor(t, 30*time.Second, "replica A to start fetching the big layer", func() bool { return hub.CDNGets(big) == 1 })
	wg.Go(func() { errs <- httpPull(b.URL(), "library/e2e-replicas", "1", "replica-b") })
	// B has its own chance to fetch the layer while A holds it; it must not.
	if testsync.Until(3*time.Second, func() bool { return hub.CDNGets(big) > 1 }) {
		close(release)
		wg.Wait()
		t.Fatalf("replica B fetched layer %s while replica A was fetching it", big)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	assertFetchedOnce(t, hub, img)
	if n := scans(a, b); n != len(img.Layers)+1 {
		t.Errorf("%d scans between the replicas, want %d (each layer and the config once)", n, len(img.Layers)+1)
	}
}

// A replica killed mid-ingest does not wedge the other: once its lock
// lapses, the survivor fetches and scans the layer itself.
func TestReplicaCrashMidIngestDoesNotWedge(t *testing.T) {
	hub := testregistry.Start(t)
	img := harmlessImage("crash")
	hub.Push(t, "library/e2e-crash", "1", img)
	// A short lease, so that the takeover comes within one hold.
	cfg := writeTemp(t, "pullgate.yaml", "gate:\n  ingest_lease: 3s\n")
	a, b := twoReplicas(t, hub, "--config", cfg)
	layer := digest.FromBytes(img.Layers[0])
	release := make(chan struct{})
	defer close(release)
	hub.Fault(layer, testregistry.Fault{Block: release})

	go func() { _ = httpPull(a.URL(), "library/e2e-crash", "1", "replica-a") }()
	testsync.WaitFor(t, 30*time.Second, "replica A to start fetching", func() bool { return hub.CDNGets(layer) == 1 })
	a.mu.Lock()
	_ = a.proc.cmd.Process.Kill()
	a.mu.Unlock()
	hub.Fault(layer, testregistry.Fault{})

	start := time.Now()
	// Like containerd, the client retries "still scanning" (429).
	var err error
	if done := testsync.Until(60*time.Second, func() bool {
		err = httpPull(b.URL(), "library/e2e-crash", "1", "replica-b")
		return err == nil || !strings.Contains(err.Error(), ": 429 ")
	}); !done || err != nil {
		t.Fatalf("replica B after A crashed (answered within 60s: %t): last answer %v", done, err)
	}
	t.Logf("replica B served the image %s after A crashed", time.Since(start).Round(time.Millisecond))
	if n := hub.CDNGets(layer); n != 2 {
		t.Errorf("layer fetched %d times, want 2 (A's attempt, then B's)", n)
	}
}

// multiPlatform pushes an index whose linux/arm64 image carries a miner and
// whose linux/amd64 image is clean.
func multiPlatform(t *testing.T, hub *testregistry.Registry, repo string) (index, amd64, arm64 digest.Digest, minerLayer digest.Digest) {
	t.Helper()
	amdImg := harmlessImage("multi-" + repo)
	armImg := testregistry.MinerImage("miner")
	armImg.Config.OS, armImg.Config.Architecture = "linux", "arm64"
	amd64 = hub.Push(t, repo, "", amdImg)
	arm64 = hub.Push(t, repo, "", armImg)
	index = hub.PushIndex(t, repo, "1", map[string]digest.Digest{"linux/amd64": amd64, "linux/arm64": arm64})
	return index, amd64, arm64, digest.FromBytes(armImg.Layers[len(armImg.Layers)-1])
}

// A miner in one platform of a multi-platform image blocks that platform's
// manifest and no other; pulling the index pre-scans the configured
// platforms, so the refused one is known before anyone asks for it.
func TestMultiPlatformMinerInOnePlatform(t *testing.T) {
	hub := testregistry.Start(t)
	index, amd64, arm64, minerLayer := multiPlatform(t, hub, "someone/multi")
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})

	status, mt, _ := getManifest(t, pg.URL()+"/v2/someone/multi/manifests/1", ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json")
	if status != http.StatusOK || (mt != ocispec.MediaTypeImageIndex && mt != "application/vnd.docker.distribution.manifest.list.v2+json") {
		t.Fatalf("index: %d %s", status, mt)
	}
	testsync.WaitFor(t, 30*time.Second, "the index pull to pre-scan linux/arm64 (and find the miner)", func() bool { return strings.Contains(pg.Log(), "blocked") && hub.CDNGets(minerLayer) == 1 })

	d := SharedDockerd(t, DockerdOptions{})
	if out, err := d.Pull(pullCtx(t), pg.Addr()+"/someone/multi:1"); err != nil {
		t.Fatalf("docker pull of the clean linux/amd64 image: %v\n%s", err, out)
	}
	if digests, err := d.RepoDigests(pg.Addr() + "/someone/multi:1"); err != nil || len(digests) != 1 || !strings.HasSuffix(digests[0], index.String()) {
		t.Errorf("RepoDigests %q (%v), want the index %s", digests, err, index)
	}
	if status, _, _ := getManifest(t, pg.URL()+"/v2/someone/multi/manifests/"+amd64.String()); status != http.StatusOK {
		t.Errorf("linux/amd64 manifest: %d", status)
	}
	status, _, body := getManifest(t, pg.URL()+"/v2/someone/multi/manifests/"+arm64.String())
	if status != http.StatusForbidden || !strings.Contains(body, "blocked: layer "+minerLayer.String()) {
		t.Errorf("linux/arm64 manifest: %d %s", status, body)
	}
	if n := hub.CDNGets(minerLayer); n != 1 {
		t.Errorf("miner layer fetched %d times, want once (by the prefetch)", n)
	}
}

// `pullgate warm` asks a running pullgate for every configured platform and
// reports each verdict; `warm.images` in the config does it at start-up.
func TestWarm(t *testing.T) {
	hub := testregistry.Start(t)
	_, amd64, arm64, minerLayer := multiPlatform(t, hub, "someone/warm")
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, PullgateBinary(t), "warm", "--server", pg.URL(), "someone/warm:1").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("pullgate warm: %v (want exit 1: one platform refused)\n%s", err, out)
	}
	for _, want := range []string{
		"someone/warm:1\tlinux/amd64\t" + amd64.String() + "\tclean",
		"someone/warm:1\tlinux/arm64\t" + arm64.String() + "\tblocked\tpullgate: docker.io/someone/warm@" + arm64.String() + " blocked: layer " + minerLayer.String(),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("pullgate warm output lacks %q:\n%s", want, out)
		}
	}

	hub2 := testregistry.Start(t)
	img := harmlessImage("warm-config")
	hub2.Push(t, "library/e2e-warm", "1", img)
	cfg := writeTemp(t, "pullgate.yaml", "warm:\n  images: [\"e2e-warm:1\"]\n  interval: 1h\n")
	StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub2.URL()}, Extra: []string{"--config", cfg}})
	testsync.WaitFor(t, 30*time.Second, "the server to warm e2e-warm:1 by itself", func() bool { return upstreamBlobGets(hub2, img) == len(img.Layers) })
}

// getManifest GETs a manifest URL and returns the status, media type and
// body.
func getManifest(t *testing.T, u string, accept ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(accept) == 0 {
		accept = []string{ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json"}
	}
	req.Header.Set("Accept", strings.Join(accept, ", "))
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(b, &probe)
	mt := resp.Header.Get("Content-Type")
	if mt == "" {
		mt = probe.MediaType
	}
	return resp.StatusCode, mt, fmt.Sprint(string(b))
}
