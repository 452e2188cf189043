package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// The core scenarios: a real dockerd pulls through the pullgate binary from
// a real distribution registry with token auth and CDN redirects.

func pullCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestDockerPullsCleanImageThroughMirror(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("1")
	want := hub.Push(t, "library/e2e-clean", "1", img)
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{pg.URL()}})

	if out, err := d.Pull(pullCtx(t), "e2e-clean:1"); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	digests, err := d.RepoDigests("e2e-clean:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(digests) != 1 || digests[0] != "e2e-clean@"+want.String() {
		t.Fatalf("repo digests %v, want e2e-clean@%s", digests, want)
	}
	if !strings.Contains(pg.Log(), "decision=allowed") {
		t.Fatal("pullgate logged no allowed decision: the pull did not go through the mirror")
	}

	// A second pull, after the image is gone from the daemon, fetches no
	// blob from upstream.
	if err := d.RemoveImage("e2e-clean:1"); err != nil {
		t.Fatal(err)
	}
	before := upstreamBlobGets(hub, img)
	if out, err := d.Pull(pullCtx(t), "e2e-clean:1"); err != nil {
		t.Fatalf("second pull: %v\n%s", err, out)
	}
	if after := upstreamBlobGets(hub, img); after != before {
		t.Fatalf("the warm pull fetched %d blobs from upstream", after-before)
	}
}

func TestDockerPullOfMinerRefused(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.MinerImage("miner")
	mdgst := hub.Push(t, "someone/miner", "1", img)
	bad := digest.FromBytes(img.Layers[2])
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{pg.URL()}})

	// Through the mirror: the daemon falls back to Docker Hub, which this
	// namespace cannot reach, so the pull fails; the reason is in pullgate's log.
	if out, err := d.Pull(pullCtx(t), "someone/miner:1"); err == nil {
		t.Fatalf("the miner image was pulled through the mirror:\n%s", out)
	}
	if d.HasImage("someone/miner:1") {
		t.Fatal("the daemon has the miner image")
	}
	testsync.WaitFor(t, 10*time.Second, "pullgate to log the block", func() bool { return strings.Contains(pg.Log(), "decision=blocked") })

	// By explicit host there is no fallback, and the user sees why.
	ref := pg.Addr() + "/someone/miner:1"
	out, err := d.Pull(pullCtx(t), ref)
	if err == nil {
		t.Fatalf("the miner image was pulled by explicit host:\n%s", out)
	}
	for _, want := range []string{"denied: pullgate: docker.io/someone/miner@" + mdgst.String(), "blocked: layer " + bad.String(), "file /usr/bin/kworker matched"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker pull output lacks %q:\n%s", want, out)
		}
	}
	// The miner layer is not stored; the first layer, clean, is.
	requireNotStored(t, pg.DataDir(), bad, digest.FromBytes(img.Layers[0]))
}

func TestDockerPullOfMinerInConfigRefused(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("cmd")
	img.Config = ocispec.Image{Config: ocispec.ImageConfig{Cmd: samples.MinerCmd()}}
	hub.Push(t, "someone/cmdminer", "1", img)
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})
	d := SharedDockerd(t, DockerdOptions{})

	out, err := d.Pull(pullCtx(t), pg.Addr()+"/someone/cmdminer:1")
	if err == nil {
		t.Fatalf("pulled an image whose command line runs a miner:\n%s", out)
	}
	if !strings.Contains(out, "denied: pullgate:") || !strings.Contains(out, "config sha256:") || !strings.Contains(out, "Cmd matched") {
		t.Fatalf("output should name the config and its Cmd:\n%s", out)
	}
}

// Verdicts survive a restart, with the embedded store and with Redis: after
// it, a pull neither fetches nor scans again, and a refused image stays
// refused without a rescan.
func TestVerdictsSurviveRestart(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			hub := testregistry.Start(t)
			clean := testregistry.CleanImage(store)
			hub.Push(t, "library/e2e-keep", "1", clean)
			hub.Push(t, "someone/e2e-bad", "1", testregistry.MinerImage("miner"))
			opts := PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}}
			if store == "redis" {
				opts.Redis = redisserver.Start(t).URL()
			}
			pg := StartPullgate(t, opts)
			d := SharedDockerd(t, DockerdOptions{})

			if out, err := d.Pull(pullCtx(t), pg.Addr()+"/library/e2e-keep:1"); err != nil {
				t.Fatalf("pull: %v\n%s", err, out)
			}
			if _, err := d.Pull(pullCtx(t), pg.Addr()+"/someone/e2e-bad:1"); err == nil {
				t.Fatal("miner pulled")
			}
			// Counted once stopped: the refused image's other blobs may
			// still be finishing their scans until then.
			pg.Stop()
			scansBefore := strings.Count(pg.Log(), "msg=scanned")
			fetchesBefore := upstreamBlobGets(hub, clean)
			pg.Restart()
			if err := d.RemoveImage(pg.Addr() + "/library/e2e-keep:1"); err != nil {
				t.Fatal(err)
			}
			if out, err := d.Pull(pullCtx(t), pg.Addr()+"/library/e2e-keep:1"); err != nil {
				t.Fatalf("pull after restart: %v\n%s", err, out)
			}
			out, err := d.Pull(pullCtx(t), pg.Addr()+"/someone/e2e-bad:1")
			if err == nil || !strings.Contains(out, "blocked") {
				t.Fatalf("miner after restart: %v\n%s", err, out)
			}
			if n := strings.Count(pg.Log(), "msg=scanned"); n != scansBefore {
				t.Fatalf("%d blobs scanned again after the restart", n-scansBefore)
			}
			if n := upstreamBlobGets(hub, clean); n != fetchesBefore {
				t.Fatalf("%d blobs fetched again after the restart", n-fetchesBefore)
			}
		})
	}
}

// Ten clients pulling one cold image at once (a fleet after a deploy) make
// pullgate fetch each layer from upstream exactly once.
func TestConcurrentColdPullsFetchEachLayerOnce(t *testing.T) {
	hub := testregistry.Start(t)
	img := testregistry.CleanImage("fleet")
	img.Layers = append(img.Layers, testregistry.Layer(testregistry.File{Path: "srv/data.bin", Data: make([]byte, 4<<20)}))
	hub.Push(t, "library/e2e-fleet", "1", img)
	pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})
	d := SharedDockerd(t, DockerdOptions{Mirrors: []string{pg.URL()}})

	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 9 {
		wg.Go(func() { errs <- httpPull(pg.URL(), "library/e2e-fleet", "1", fmt.Sprintf("client-%d", i)) })
	}
	wg.Go(func() {
		if out, err := d.Pull(pullCtx(t), "e2e-fleet:1"); err != nil {
			errs <- fmt.Errorf("docker pull: %w\n%s", err, out)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	assertFetchedOnce(t, hub, img)
}

// Upstream sending the wrong bytes or a cut-off blob: refused, nothing
// cached, and the next pull (upstream healed) works.
func TestUpstreamCorruptionRefusedAndNothingCached(t *testing.T) {
	for name, c := range map[string]struct {
		fault testregistry.Fault
		want  string
	}{
		"wrong digest": {testregistry.Fault{Corrupt: true}, "does not match its digest"},
		"truncated":    {testregistry.Fault{Truncate: true}, "unexpected EOF"},
	} {
		t.Run(name, func(t *testing.T) {
			fault, want := c.fault, c.want
			hub := testregistry.Start(t)
			img := testregistry.CleanImage(name)
			hub.Push(t, "library/e2e-flaky", "1", img)
			bad := digest.FromBytes(img.Layers[1])
			hub.Fault(bad, fault)
			pg := StartPullgate(t, PullgateOptions{Upstreams: map[string]string{"docker.io": hub.URL()}})
			d := SharedDockerd(t, DockerdOptions{})
			ref := pg.Addr() + "/library/e2e-flaky:1"

			out, err := d.Pull(pullCtx(t), ref)
			if err == nil {
				t.Fatalf("pulled an image whose layer did not verify:\n%s", out)
			}
			// The Docker Engine shows only the status of a 5xx; the reason,
			// naming the layer, is in pullgate's log.
			if !strings.Contains(out, "503 Service Unavailable") {
				t.Errorf("want a 503 for an upstream fault:\n%s", out)
			}
			if log := pg.Log(); !strings.Contains(log, bad.String()) || !strings.Contains(log, want) {
				t.Errorf("pullgate's log does not say %q about layer %s", want, bad)
			}
			// The bad bytes are not stored; the first layer, clean, is.
			requireNotStored(t, pg.DataDir(), bad, digest.FromBytes(img.Layers[0]))
			hub.Fault(bad, testregistry.Fault{})
			if out, err := d.Pull(pullCtx(t), ref); err != nil {
				t.Fatalf("pull after upstream healed: %v\n%s", err, out)
			}
		})
	}
}

// httpPull pulls an image the way a client does: the manifest by tag, then
// every blob, checking digests.
func httpPull(base, repo, tag, agent string) error {
	get := func(path string, accept ...string) ([]byte, error) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", agent)
		for _, a := range accept {
			req.Header.Add("Accept", a)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return body, nil
	}
	body, err := get("/v2/"+repo+"/manifests/"+tag, "application/vnd.docker.distribution.manifest.v2+json", ocispec.MediaTypeImageManifest)
	if err != nil {
		return err
	}
	m, err := parseManifest(body)
	if err != nil {
		return err
	}
	for _, d := range m {
		b, err := get("/v2/" + repo + "/blobs/" + d.String())
		if err != nil {
			return err
		}
		if digest.FromBytes(b) != d {
			return fmt.Errorf("blob %s: wrong content", d)
		}
	}
	return nil
}

func upstreamBlobGets(hub *testregistry.Registry, img testregistry.Image) int {
	n := 0
	for _, l := range img.Layers {
		n += hub.CDNGets(digest.FromBytes(l))
	}
	return n
}

// blobInStore looks for a blob's data file under pullgate's data dir,
// wherever the storage driver keeps it. A walk that fails fails the test:
// a store that cannot be read must not pass for one without the blob.
func blobInStore(t *testing.T, dataDir string, d digest.Digest) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dataDir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && e.Name() == "data" && filepath.Base(filepath.Dir(p)) == d.Encoded() {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("look for blob %s under %s: %v", d, dataDir, err)
	}
	return found
}

// requireNotStored fails the test if absent is in pullgate's store. Its
// positive control is stored, a blob of the same pull that scanned clean:
// the same look-up must find it (waiting for its ingest to commit), so a
// change of the store's layout cannot make "not in the store" pass by
// finding nothing at all.
func requireNotStored(t *testing.T, dataDir string, absent, stored digest.Digest) {
	t.Helper()
	testsync.WaitFor(t, 30*time.Second, "the clean blob "+stored.String()+" to be found in the store (positive control)",
		func() bool { return blobInStore(t, dataDir, stored) })
	if blobInStore(t, dataDir, absent) {
		t.Fatalf("blob %s is in pullgate's store", absent)
	}
}

// parseManifest lists an image manifest's blobs, config first.
func parseManifest(body []byte) ([]digest.Digest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	out := []digest.Digest{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out, nil
}

// assertFetchedOnce checks that every layer of img was fetched from
// upstream exactly once, however many clients or replicas asked.
func assertFetchedOnce(t *testing.T, hub *testregistry.Registry, img testregistry.Image) {
	t.Helper()
	for _, l := range img.Layers {
		if n := hub.CDNGets(digest.FromBytes(l)); n != 1 {
			t.Errorf("layer %s fetched %d times from upstream", digest.FromBytes(l), n)
		}
	}
}
