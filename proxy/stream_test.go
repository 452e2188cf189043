package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/redisserver"
	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
	pgredis "github.com/pullgate/pullgate/storage/redis"
)

const waitLong = 30 * time.Second

// A clean cold layer streams: with the upstream paused before its last
// bytes (so the scan cannot have finished), the client has more than half
// of the body, and no more than all but the held tail; once upstream goes
// on, it gets the rest and the right digest. The spool is there while the
// ingest runs and gone after it.
func TestStreamCleanLayer(t *testing.T) {
	f := newStreamFixture(t)
	layer := noisyLayer(512 << 10)
	b := f.up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)
	pz := f.up.pauseBlob(ld, false)

	resp, body := f.do(t, "GET", "/v2/library/big/manifests/1")
	if resp.StatusCode != 200 || digest.FromBytes(body) != b.Digest {
		t.Fatalf("manifest in stream mode: %d %s", resp.StatusCode, body)
	}
	dl := f.startGet(t, "/v2/library/big/blobs/"+ld.String())
	if dl.resp.StatusCode != 200 {
		t.Fatalf("layer: %d", dl.resp.StatusCode)
	}
	<-pz.reached
	size := int64(len(layer))
	testsync.WaitFor(t, waitLong, "half of the layer streamed", func() bool { return dl.got.Load() > size/2 })
	if _, err := f.store.Verdict(context.Background(), ld, f.srv.gate.Scanner().RulesetID(), storage.ContextLayer); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the layer has a verdict before upstream sent its end: %v", err)
	}
	if got := f.spoolFiles(t); len(got) != 1 {
		t.Fatalf("spool folder during the ingest: %q", got)
	}
	if testsync.Until(200*time.Millisecond, func() bool { return dl.got.Load() > size-gate.StreamHold }) {
		t.Fatalf("the held tail went out before the verdict: %d of %d bytes", dl.got.Load(), size)
	}
	pz.open()
	got, err := dl.wait(t)
	if err != nil || digest.FromBytes(got) != ld {
		t.Fatalf("streamed layer: %d of %d bytes, err %v", len(got), size, err)
	}
	testsync.WaitFor(t, waitLong, "the spool folder emptied", func() bool { return len(f.spoolFiles(t)) == 0 })
	if n := f.up.blobGets(ld); n != 1 {
		t.Fatalf("layer fetched %d times upstream", n)
	}
}

// A miner layer: the client gets at most all but the held tail, the
// connection is cut, the retry is 403 with the reason, nothing of it is
// stored, and the manifest is now refused at once from the stored verdict.
func TestStreamMinerLayerCut(t *testing.T) {
	f := newStreamFixture(t)
	miner := noisyLayer(512<<10, testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()})
	f.up.push(t, "someone/tool", "1", testregistry.Image{Layers: [][]byte{miner}})
	md := digest.FromBytes(miner)
	pz := f.up.pauseBlob(md, false)

	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest in stream mode: %d %s", resp.StatusCode, body)
	}
	dl := f.startGet(t, "/v2/someone/tool/blobs/"+md.String())
	size := int64(len(miner))
	testsync.WaitFor(t, waitLong, "half of the layer streamed", func() bool { return dl.got.Load() > size/2 })
	pz.open()
	got, err := dl.wait(t)
	if err == nil || int64(len(got)) > size-gate.StreamHold {
		t.Fatalf("miner layer: got %d of %d bytes (err %v); want the connection cut before the last %d", len(got), size, err, gate.StreamHold)
	}
	resp, body := f.do(t, "GET", "/v2/someone/tool/blobs/"+md.String(), "Range", "bytes="+itoa(int64(len(got)))+"-")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("retry of the miner layer: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "kworker") {
		t.Fatalf("retry's message %q lacks the reason", msg)
	}
	if _, err := f.blobs.Stat(context.Background(), md); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("miner layer is in the store: %v", err)
	}
	if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("manifest with a stored refusing verdict: %d", resp.StatusCode)
	}
	testsync.WaitFor(t, waitLong, "the spool folder emptied", func() bool { return len(f.spoolFiles(t)) == 0 })
}

// Two clients of one layer, the second joining after the first has half
// of it: both get all of the right bytes, from one upstream fetch.
func TestStreamLateClient(t *testing.T) {
	f := newStreamFixture(t)
	layer := noisyLayer(512 << 10)
	f.up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)
	pz := f.up.pauseBlob(ld, false)
	if resp, _ := f.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	size := int64(len(layer))
	first := f.startGet(t, "/v2/library/big/blobs/"+ld.String())
	testsync.WaitFor(t, waitLong, "half of the layer streamed", func() bool { return first.got.Load() > size/2 })
	late := f.startGet(t, "/v2/library/big/blobs/"+ld.String())
	testsync.WaitFor(t, waitLong, "the late client caught up", func() bool { return late.got.Load() > size/2 })
	pz.open()
	for name, dl := range map[string]*blobDownload{"first": first, "late": late} {
		if got, err := dl.wait(t); err != nil || digest.FromBytes(got) != ld {
			t.Errorf("%s client: %d of %d bytes, err %v", name, len(got), size, err)
		}
	}
	if n := f.up.blobGets(ld); n != 1 {
		t.Fatalf("layer fetched %d times upstream", n)
	}
}

// An ingest that fails mid-way (upstream cuts): the tail never goes out,
// and the spool is gone afterwards.
func TestStreamUpstreamCut(t *testing.T) {
	f := newStreamFixture(t)
	layer := noisyLayer(512 << 10)
	f.up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)
	pz := f.up.pauseBlob(ld, true)
	if resp, _ := f.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	size := int64(len(layer))
	dl := f.startGet(t, "/v2/library/big/blobs/"+ld.String())
	testsync.WaitFor(t, waitLong, "half of the layer streamed", func() bool { return dl.got.Load() > size/2 })
	pz.open()
	got, err := dl.wait(t)
	if err == nil || int64(len(got)) > size-gate.StreamHold {
		t.Fatalf("cut ingest: got %d of %d bytes (err %v)", len(got), size, err)
	}
	testsync.WaitFor(t, waitLong, "the spool folder emptied", func() bool { return len(f.spoolFiles(t)) == 0 })
	if _, err := f.blobs.Stat(context.Background(), ld); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a cut layer is in the store: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// While a layer streams, what cannot be sent before its verdict waits as
// in hold mode: a Range for the tail itself, a HEAD, a GET by digest that
// no manifest named, the image's config. A Range that starts before the
// tail streams up to it. (A short hold makes "waits" visible as 429.)
func TestStreamWhatWaits(t *testing.T) {
	f := newStreamFixture(t, func(o *Options) { o.Hold = time.Second })
	layer := noisyLayer(512 << 10)
	b := f.up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)
	pz := f.up.pauseBlob(ld, false)
	loose := noisyLayer(256 << 10)
	f.up.push(t, "library/loose", "1", testregistry.Image{Layers: [][]byte{loose}})
	lz := f.up.pauseBlob(digest.FromBytes(loose), false)
	if resp, _ := f.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	size := int64(len(layer))
	path := "/v2/library/big/blobs/" + ld.String()
	ranged := f.startGet(t, path, "Range", "bytes=100-")
	if ranged.resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range before the tail: %d", ranged.resp.StatusCode)
	}
	testsync.WaitFor(t, waitLong, "the range streamed", func() bool { return ranged.got.Load() > size/2 })
	<-pz.reached
	tail := "bytes=" + itoa(size-100) + "-"
	for _, c := range []struct {
		what, method, path string
		hdr                []string
	}{
		{"range of the tail", "GET", path, []string{"Range", tail}},
		{"HEAD", "HEAD", path, nil},
		{"config", "GET", "/v2/library/big/blobs/" + b.ConfigDigest.String(), nil},
		{"blob no manifest named", "GET", "/v2/library/loose/blobs/" + digest.FromBytes(loose).String(), nil},
	} {
		if resp, body := f.do(t, c.method, c.path, c.hdr...); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("%s during the ingest: %d %q, want 429 (held)", c.what, resp.StatusCode, body)
		}
	}
	pz.open()
	lz.open()
	if got, err := ranged.wait(t); err != nil || string(got) != string(layer[100:]) {
		t.Fatalf("range before the tail: %d bytes, err %v", len(got), err)
	}
	testsync.WaitFor(t, waitLong, "the tail served", func() bool {
		resp, body := f.do(t, "GET", path, "Range", tail)
		return resp.StatusCode == http.StatusPartialContent && string(body) == string(layer[size-100:])
	})
	testsync.WaitFor(t, waitLong, "the config served", func() bool {
		resp, body := f.do(t, "GET", "/v2/library/big/blobs/"+b.ConfigDigest.String())
		return resp.StatusCode == 200 && digest.FromBytes(body) == b.ConfigDigest
	})
}

// A miner only in the config's command line: the manifest and the layers
// are served, the config is refused with the image's reason.
func TestStreamConfigRefusedWithImage(t *testing.T) {
	f := newStreamFixture(t)
	layer := noisyLayer(256 << 10)
	img := testregistry.Image{Layers: [][]byte{layer}, Config: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: samples.MinerCmd()}}}
	b := f.up.push(t, "someone/web", "1", img)
	// The config is judged before the manifest goes out: a client that
	// already holds its bytes (served as another image's artifact) would
	// not ask for them again.
	resp, body := f.do(t, "GET", "/v2/someone/web/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("manifest of an image whose config carries a miner: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "Entrypoint") {
		t.Fatalf("message %q lacks the reason", msg)
	}
	if n := f.up.blobGets(digest.FromBytes(layer)); n != 0 {
		t.Fatalf("the layer of a refused image was fetched %d times", n)
	}
	testsync.WaitFor(t, waitLong, "the image's decision recorded", func() bool {
		for _, ev := range f.srv.live.Recent(100) {
			if ev.Digest == b.Digest && ev.Decision == verdict.Blocked && strings.Contains(ev.Reason, "Entrypoint") {
				return true
			}
		}
		return false
	})
	resp, _ = f.do(t, "GET", "/v2/someone/web/blobs/"+b.ConfigDigest.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("config of a refused image: %d", resp.StatusCode)
	}
}

// The known-bad list refuses a stream mode manifest at once, before any
// blob is fetched.
func TestStreamManifestKnownBad(t *testing.T) {
	layer := noisyLayer(64 << 10)
	ld := digest.FromBytes(layer)
	f := newStreamFixture(t, func(o *Options) { o.KnownBad = digestList{ld} })
	f.up.push(t, "library/known", "1", testregistry.Image{Layers: [][]byte{layer}})
	resp, body := f.do(t, "GET", "/v2/library/known/manifests/1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("manifest with a known-bad layer: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "known-bad") {
		t.Fatalf("message %q", msg)
	}
	if n := f.up.blobGets(ld); n != 0 {
		t.Fatalf("known-bad layer fetched %d times", n)
	}
}

// A new server on the same data starts with an empty spool folder: what a
// restart mid-ingest left was never judged.
func TestStreamSpoolEmptiedAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blob-left"), []byte("unjudged bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newStreamFixture(t, func(o *Options) { o.SpoolDir = dir })
	if got := f.spoolFiles(t); len(got) != 0 {
		t.Fatalf("spool folder at start: %q", got)
	}
}

// The mode is chosen per client: by the longest user agent prefix, else
// the server's mode; hold keeps the manifest until the image's decision.
// Each client pulls a miner image nothing is known of yet.
func TestStreamModeByAgent(t *testing.T) {
	cases := []struct {
		agent string
		want  int
	}{
		{"holdme/1.0", http.StatusForbidden},
		{"holdme/but-stream/1.0", 200},
		{"skopeo/1.0", 200},
	}
	for _, c := range cases {
		f := newStreamFixture(t, func(o *Options) {
			o.AgentModes = map[string]Mode{"holdme/": ModeHold, "holdme/but-stream": ModeStream}
		})
		f.up.push(t, "someone/tool", "1", testregistry.MinerImage("agents"))
		if resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1", "User-Agent", c.agent); resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.agent, resp.StatusCode, c.want)
		}
	}
}

// Findings that add up across layers refuse the image though each blob
// passes alone: the layers are served, the config is refused with the
// image's reason.
func TestStreamConfigRefusedByCombination(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "test.yar")
	writeRule(t, rules, `
rule TestMediumA { meta: category = "miner" severity = "medium" description = "first hint" strings: $a = "HINT-ALPHA" condition: $a }
rule TestMediumB { meta: category = "pool" severity = "medium" description = "second hint" strings: $a = "HINT-BRAVO" condition: $a }
`)
	f := newStreamFixture(t, func(o *Options) { o.Scanner = testScanner(t, rules) })
	layers := [][]byte{
		noisyLayer(128<<10, testregistry.File{Path: "a.txt", Data: []byte("HINT-ALPHA")}),
		noisyLayer(128<<10, testregistry.File{Path: "b.txt", Data: []byte("HINT-BRAVO")}),
	}
	b := f.up.push(t, "library/two", "1", testregistry.Image{Layers: layers})
	if resp, _ := f.do(t, "GET", "/v2/library/two/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	for _, l := range layers {
		if resp, body := f.do(t, "GET", "/v2/library/two/blobs/"+digest.FromBytes(l).String()); resp.StatusCode != 200 || digest.FromBytes(body) != digest.FromBytes(l) {
			t.Fatalf("layer that passes alone: %d", resp.StatusCode)
		}
	}
	// Under the image's name, and under another repository upstream says
	// carries it: an image refused as a whole is not completed by its
	// config asked for elsewhere.
	for _, repo := range []string{"library/two", "someone/elsewhere"} {
		resp, body := f.do(t, "GET", "/v2/"+repo+"/blobs/"+b.ConfigDigest.String())
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("config of an image refused by its layers together, under %s: %d", repo, resp.StatusCode)
		}
		if _, msg := ociError(t, body); !strings.Contains(msg, "TestMedium") {
			t.Fatalf("message %q lacks the reason", msg)
		}
	}
}

// A replica whose ingest of a layer waits on another replica's lease
// streams nothing: its client waits for the verdict, as in hold mode, and
// is then served from the shared store; upstream is asked once.
func TestStreamAcrossReplicasWaitsForTheVerdict(t *testing.T) {
	ctx := context.Background()
	up, url := newPausingRegistry(t)
	redis := redisserver.Start(t)
	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for range 2 {
		store, err := pgredis.Open(ctx, redis.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		srv, err := New(Options{Options: gate.Options{
			Upstreams: map[string]*upstream.Registry{"docker.io": loopbackUpstream(t, url)},
			Blobs:     blobs, Verdicts: store, Locks: store, Releases: store, Scanner: testScanner(t),
			SpoolDir: filepath.Join(t.TempDir(), "spool"), Logger: slog.New(slog.DiscardHandler),
		}, Mode: ModeStream, Hold: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		urls = append(urls, ts.URL)
	}
	layer := noisyLayer(512 << 10)
	up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)
	pz := up.pauseBlob(ld, false)
	a := &streamFixture{fixture: &fixture{url: urls[0], client: httptestClient()}}
	b := &fixture{url: urls[1], client: httptestClient()}
	if resp, _ := a.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest on the first replica: %d", resp.StatusCode)
	}
	size := int64(len(layer))
	dl := a.startGet(t, "/v2/library/big/blobs/"+ld.String())
	testsync.WaitFor(t, waitLong, "half of the layer streamed", func() bool { return dl.got.Load() > size/2 })
	if resp, _ := b.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest on the second replica: %d", resp.StatusCode)
	}
	if resp, body := b.do(t, "GET", "/v2/library/big/blobs/"+ld.String()); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("layer on the replica without the lease: %d (%d bytes), want 429 (held)", resp.StatusCode, len(body))
	}
	pz.open()
	if got, err := dl.wait(t); err != nil || digest.FromBytes(got) != ld {
		t.Fatalf("streamed layer: %d bytes, err %v", len(got), err)
	}
	testsync.WaitFor(t, waitLong, "the second replica serves the layer", func() bool {
		resp, body := b.do(t, "GET", "/v2/library/big/blobs/"+ld.String())
		return resp.StatusCode == 200 && digest.FromBytes(body) == ld
	})
	if n := up.blobGets(ld); n != 1 {
		t.Fatalf("layer fetched %d times by two replicas", n)
	}
}

// The tail waits for the gate's whole decision on the blob, not only its
// scan: an operator's deny made while the layer streams cuts it, though it
// scanned clean.
func TestStreamTailWaitsForOperatorDeny(t *testing.T) {
	f := newStreamFixture(t)
	layer := noisyLayer(512 << 10)
	f.up.push(t, "library/big", "1", testregistry.Image{Layers: [][]byte{layer}})
	ld := digest.FromBytes(layer)
	pz := f.up.pauseBlob(ld, false)
	if resp, _ := f.do(t, "GET", "/v2/library/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	size := int64(len(layer))
	dl := f.startGet(t, "/v2/library/big/blobs/"+ld.String())
	testsync.WaitFor(t, waitLong, "half of the layer streamed", func() bool { return dl.got.Load() > size/2 })
	f.override(t, ld.String(), storage.Deny)
	pz.open()
	if got, err := dl.wait(t); err == nil || int64(len(got)) > size-gate.StreamHold {
		t.Fatalf("layer denied while streaming: got %d of %d bytes (err %v)", len(got), size, err)
	}
	resp, body := f.do(t, "GET", "/v2/library/big/blobs/"+ld.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("retry of a denied layer: %d", resp.StatusCode)
	}
	if _, msg := ociError(t, body); !strings.Contains(msg, "denied by operator") {
		t.Fatalf("message %q", msg)
	}
}

// A hostile upstream and manifest: the manifest declares a layer 64 KiB
// (and more) longer than the bytes that hash to its digest, and upstream
// sends those bytes with no length, or with the declared one, then hangs
// up. A client must never get all of the real bytes: with no length or
// another one nothing is streamed (the layer is judged first, and fails);
// with the declared length the stream stays 64 KiB behind what came.
func TestStreamDeclaredSizeLies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length func(declared int64) int64
	}{
		{"no Content-Length", func(int64) int64 { return -1 }},
		{"the declared Content-Length", func(declared int64) int64 { return declared }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newStreamFixture(t)
			miner := noisyLayer(256<<10, testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()})
			b := f.up.push(t, "someone/tool", "1", testregistry.Image{Layers: [][]byte{miner}})
			md := digest.FromBytes(miner)
			declared := int64(len(miner)) + 2*gate.StreamHold
			var m map[string]any
			if err := json.Unmarshal(b.Manifest, &m); err != nil {
				t.Fatal(err)
			}
			m["layers"].([]any)[0].(map[string]any)["size"] = declared
			forged, _ := json.Marshal(m)
			fb := *b
			fb.Manifest, fb.Digest = forged, digest.FromBytes(forged)
			f.up.mu.Lock()
			f.up.manifests["someone/tool:1"], f.up.manifests[fb.Digest.String()] = &fb, &fb
			f.up.lies[md] = tc.length(declared)
			f.up.mu.Unlock()

			if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != 200 {
				t.Fatalf("manifest in stream mode: %d %s", resp.StatusCode, body)
			}
			dl := f.startGet(t, "/v2/someone/tool/blobs/"+md.String())
			got, _ := dl.wait(t)
			if int64(len(got)) > int64(len(miner))-gate.StreamHold {
				t.Fatalf("got %d bytes of a layer whose real bytes are %d (declared %d); want at most the real ones less %d",
					len(got), len(miner), declared, gate.StreamHold)
			}
			if _, err := f.blobs.Stat(context.Background(), md); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the layer is in the store: %v", err)
			}
		})
	}
}

// A client that reads a refused layer slowly is cut once the verdict is
// in, not sent the rest of the layer's head: it receives far less than
// the head of a layer much larger than the socket buffers.
func TestStreamSlowReaderCutOnRefusal(t *testing.T) {
	f := newStreamFixture(t)
	miner := noisyLayer(32<<20, testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()})
	f.up.push(t, "someone/tool", "1", testregistry.Image{Layers: [][]byte{miner}})
	md := digest.FromBytes(miner)
	pz := f.up.pauseBlob(md, false)
	if resp, body := f.do(t, "GET", "/v2/someone/tool/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest in stream mode: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, f.url+"/v2/someone/tool/blobs/"+md.String(), nil)
	// The kernel's buffers hold what was sent before the refusal; left to
	// autotune (tcp_rmem's ceiling is 32 MiB on some hosts) they would hold
	// most of the layer, so the client's window is kept small.
	resp, err := smallWindowClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("the first MiB of a streamed layer: %v", err)
	}
	// The client stops reading; the scan finishes and refuses.
	testsync.WaitFor(t, waitLong, "the upstream reached its held tail", func() bool {
		select {
		case <-pz.reached:
			return true
		default:
			return false
		}
	})
	pz.open()
	testsync.WaitFor(t, waitLong, "the layer's refusal stored", func() bool {
		resp, _ := f.do(t, "GET", "/v2/someone/tool/manifests/1")
		return resp.StatusCode == http.StatusForbidden
	})
	rest, _ := io.ReadAll(resp.Body)
	if got := len(head) + len(rest); got > len(miner)/2 {
		t.Fatalf("a slow reader got %d of the refused layer's %d bytes after its refusal; want it cut", got, len(miner))
	}
}
