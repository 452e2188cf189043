package proxy

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

func TestConcurrentColdPullsFetchEachBlobOnce(t *testing.T) {
	f := newFixture(t)
	img := testregistry.CleanImage("busy")
	f.hub.Push(t, "library/busy", "1", img)
	var wg sync.WaitGroup
	codes := make(chan int, 10)
	for range 10 {
		wg.Go(func() {
			resp, _ := f.do(t, "GET", "/v2/library/busy/manifests/1")
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a pull got %d", c)
		}
	}
	for _, l := range img.Layers {
		if n := f.hub.CDNGets(digest.FromBytes(l)); n != 1 {
			t.Errorf("layer fetched %d times from upstream", n)
		}
	}
	// A second pull, blobs included, fetches nothing more.
	f.do(t, "GET", "/v2/library/busy/manifests/1")
	for _, l := range img.Layers {
		d := digest.FromBytes(l)
		if resp, _ := f.do(t, "GET", "/v2/library/busy/blobs/"+d.String()); resp.StatusCode != 200 {
			t.Fatalf("blob: %d", resp.StatusCode)
		}
		if n := f.hub.CDNGets(d); n != 1 {
			t.Errorf("warm pull fetched a layer again (%d)", n)
		}
	}
}

func TestUpstreamCorruptionRefusedAndNotCached(t *testing.T) {
	for name, fault := range map[string]testregistry.Fault{
		"wrong digest": {Corrupt: true, Times: 1},
		"truncated":    {Truncate: true, Times: 1},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			img := testregistry.CleanImage(name)
			f.hub.Push(t, "library/flaky", "1", img)
			d := digest.FromBytes(img.Layers[1])
			f.hub.Fault(d, fault)

			resp, body := f.do(t, "GET", "/v2/library/flaky/manifests/1")
			if resp.StatusCode == 200 {
				t.Fatal("served an image whose layer did not verify")
			}
			if _, msg := ociError(t, body); !strings.Contains(msg, d.String()) {
				t.Errorf("message %q does not name the layer", msg)
			}
			if _, err := f.blobs.Stat(context.Background(), d); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("bad bytes were stored: %v", err)
			}
			if _, err := f.store.Verdict(context.Background(), d, f.srv.gate.Scanner().RulesetID(), storage.ContextLayer); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a verdict was kept for bytes that did not verify: %v", err)
			}
			// The fault was once: the retry fetches the right bytes.
			if resp, body := f.do(t, "GET", "/v2/library/flaky/manifests/1"); resp.StatusCode != 200 {
				t.Fatalf("retry: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestStillScanningAnswersRetryLater(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.Hold = 300 * time.Millisecond; o.RetryAfter = 2 * time.Second })
	img := testregistry.CleanImage("slow")
	f.hub.Push(t, "library/slow", "1", img)
	release := make(chan struct{})
	f.hub.Fault(digest.FromBytes(img.Layers[1]), testregistry.Fault{Block: release})

	resp, body := f.do(t, "GET", "/v2/library/slow/manifests/1", "User-Agent", "containerd/v1.7.0")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if code, msg := ociError(t, body); code != "TOOMANYREQUESTS" || !strings.Contains(msg, "still being scanned") {
		t.Fatalf("%s: %s", code, msg)
	}
	close(release)
	// The scan went on without the client; the retry gets the image.
	testsync.WaitFor(t, 10*time.Second, "the held image to be served", func() bool {
		resp, _ := f.do(t, "GET", "/v2/library/slow/manifests/1")
		return resp.StatusCode == 200
	})
	if n := f.hub.CDNGets(digest.FromBytes(img.Layers[1])); n != 1 {
		t.Fatalf("layer fetched %d times", n)
	}
}

func TestUnknownBlobIsScannedBeforeItIsServed(t *testing.T) {
	f := newFixture(t)
	clean := f.hub.PushBlob(t, "library/raw", testregistry.Layer(testregistry.File{Path: "a", Data: []byte("a")}))
	bad := f.hub.PushBlob(t, "library/raw", testregistry.Layer(testregistry.File{Path: "opt/x/xmrig", Mode: 0o755, Data: samples.XMRig()}))
	if resp, _ := f.do(t, "GET", "/v2/library/raw/blobs/"+clean.String()); resp.StatusCode != 200 {
		t.Fatalf("clean blob: %d", resp.StatusCode)
	}
	resp, body := f.do(t, "GET", "/v2/library/raw/blobs/"+bad.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("miner blob: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "/opt/x/xmrig") {
		t.Fatalf("message %q", msg)
	}
}

// Close lets the ingests in progress record their verdicts: a blob stored
// without one would be fetched or scanned again after the restart.
func TestCloseWaitsForIngestsInProgress(t *testing.T) {
	f := newFixture(t, func(o *Options, _ *scanner.Options) { o.Hold = 100 * time.Millisecond })
	img := testregistry.CleanImage("closing")
	f.hub.Push(t, "library/closing", "1", img)
	slow := digest.FromBytes(img.Layers[1])
	release := make(chan struct{})
	f.hub.Fault(slow, testregistry.Fault{Block: release})
	// Under load the 100 ms hold can run out before the manifest is in and
	// the ingests have started (also a 429), so ask until the layer's has.
	testsync.WaitFor(t, 10*time.Second, "the held layer's ingest to start", func() bool {
		if resp, body := f.do(t, "GET", "/v2/library/closing/manifests/1", "User-Agent", "containerd/v1.7.0"); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("status %d while the layer is held upstream: %s", resp.StatusCode, body)
		}
		return slices.ContainsFunc(f.srv.gate.Scans(), func(fl gate.FlightInfo) bool { return fl.Digest == slow })
	})

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		f.srv.Close(context.Background())
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while an ingest was running")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-closed
	if _, err := f.store.Verdict(context.Background(), slow, f.srv.gate.Scanner().RulesetID(), storage.ContextLayer); err != nil {
		t.Fatalf("no verdict for the layer once Close returned: %v", err)
	}
}
