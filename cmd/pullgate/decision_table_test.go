package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

// answer is what one path said about an image: the outcome, and whether
// the image (or, on the blob path, every blob of it) was refused.
type answer struct {
	Outcome verdict.Outcome
	Refused bool
}

func (a answer) String() string { return fmt.Sprintf("%s (refused %v)", a.Outcome, a.Refused) }

// precedenceCase is one row of the precedence table. want is the image's
// answer, on the manifest path and in pullgate scan alike. blobs is the
// answer of the blob path, each blob asked for on its own: the same as want
// except where a blob is judged alone by design (noted in the row).
type precedenceCase struct {
	name  string
	repo  string
	image func() testregistry.Image
	// setup seeds a store before any path asks (overrides, stale verdicts).
	setup func(t *testing.T, st storage.Store, b *testregistry.Built)
	want  answer
	blobs answer
}

// tableImages are the images the table is made of.
type tableImages struct{}

var _ = (*tableImages)(nil)

func (tableImages) clean(note string) testregistry.Image { return testregistry.CleanImage(note) }
func (tableImages) miner(note string) testregistry.Image { return testregistry.MinerImage(note) }

// corruptLayer is a gzip stream that decodes to bytes that are no tar.
func corruptLayer() []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(bytes.Repeat([]byte("this is not a tar archive "), 100))
	_ = zw.Close()
	return buf.Bytes()
}

// packedAgent is a UPX-packed stand-in: alone it only warns.
func packedAgent() []byte {
	return testregistry.LayerZstd(testregistry.File{Path: "usr/bin/agent", Mode: 0o755, Data: samples.UPX(samples.XMRig(), false)})
}

// manyFiles is a layer over the table's limit of files.
func manyFiles() []byte {
	var fs []testregistry.File
	for i := range tableMaxFiles + 5 {
		fs = append(fs, testregistry.File{Path: fmt.Sprintf("data/%d", i), Data: []byte{byte(i)}})
	}
	return testregistry.Layer(fs...)
}

const tableMaxFiles = 20

var (
	refused = func(o verdict.Outcome) answer { return answer{o, true} }
	served  = func(o verdict.Outcome) answer { return answer{o, false} }
)

func precedenceCases() []precedenceCase {
	var im tableImages
	allowImage := func(t *testing.T, st storage.Store, b *testregistry.Built) {
		// As the admin API writes an image allow: the image, and each of
		// its blobs that does not scan clean, tied to it.
		put(t, st, storage.Override{Subject: b.Digest.String(), Action: storage.Allow, Reason: "vetted", Actor: "ops"})
		put(t, st, storage.Override{Subject: b.Layers[2].Digest.String(), Action: storage.Allow, Reason: "vetted", Actor: "ops", Image: b.Digest})
	}
	return []precedenceCase{
		{name: "clean", repo: "table/clean", image: func() testregistry.Image { return im.clean("clean") },
			want: served(verdict.Allowed), blobs: served(verdict.Allowed)},
		{name: "override allow on a clean image", repo: "table/allowed", image: func() testregistry.Image { return im.clean("allowed") },
			setup: func(t *testing.T, st storage.Store, b *testregistry.Built) {
				put(t, st, storage.Override{Subject: b.Digest.String(), Action: storage.Allow, Reason: "vetted", Actor: "ops"})
			},
			// The allow names the manifest; its blobs scan clean and need none.
			want: served(verdict.Overridden), blobs: served(verdict.Allowed)},
		{name: "override deny", repo: "table/denied", image: func() testregistry.Image { return im.clean("denied") },
			setup: func(t *testing.T, st storage.Store, b *testregistry.Built) {
				put(t, st, storage.Override{Subject: b.Digest.String(), Action: storage.Deny, Reason: "not here", Actor: "ops"})
			},
			// A deny on an image refuses its manifest, without which no
			// client can assemble it; its layers are shared building
			// blocks of other images and stay served.
			want: refused(verdict.Overridden), blobs: served(verdict.Allowed)},
		{name: "known-bad manifest digest", repo: "table/kbimage", image: func() testregistry.Image { return im.clean("kb image") },
			// Only the manifest is on the list; its blobs are not.
			want: refused(verdict.Blocked), blobs: served(verdict.Allowed)},
		{name: "known-bad blob digest", repo: "table/kbblob", image: func() testregistry.Image { return im.clean("kb blob") },
			want: refused(verdict.Blocked), blobs: refused(verdict.Blocked)},
		{name: "publisher deny", repo: "shady/tool", image: func() testregistry.Image { return im.clean("shady") },
			want: refused(verdict.Policy), blobs: refused(verdict.Policy)},
		{name: "blocked verdict", repo: "table/miner", image: func() testregistry.Image { return im.miner("miner") },
			want: refused(verdict.Blocked), blobs: refused(verdict.Blocked)},
		{name: "warn", repo: "table/warn", image: func() testregistry.Image {
			return testregistry.Image{Layers: [][]byte{packedAgent()}}
		}, want: served(verdict.Allowed), blobs: served(verdict.Allowed)},
		{name: "scan error", repo: "table/corrupt", image: func() testregistry.Image {
			img := im.clean("corrupt")
			img.Layers = append(img.Layers, corruptLayer())
			return img
		}, want: refused(verdict.Failed), blobs: refused(verdict.Failed)},
		{name: "limit exceeded", repo: "table/limit", image: func() testregistry.Image {
			return testregistry.Image{Layers: [][]byte{manyFiles()}}
		}, want: refused(verdict.Failed), blobs: refused(verdict.Failed)},
		{name: "verdict of another ruleset only", repo: "table/stale", image: func() testregistry.Image { return im.miner("stale") },
			setup: func(t *testing.T, st storage.Store, b *testregistry.Built) {
				// A clean verdict under an older ruleset is never served as
				// current: the miner is scanned again and found.
				for _, l := range b.Layers {
					putVerdict(t, st, storage.Verdict{Digest: l.Digest, RulesetID: "an-older-ruleset", Context: storage.ContextLayer,
						Status: storage.StatusClean, ScannerVersion: scanner.Version, Time: time.Now()})
				}
			},
			want: refused(verdict.Blocked), blobs: refused(verdict.Blocked)},
		{name: "two medium indicators in different blobs", repo: "table/mediums", image: func() testregistry.Image {
			return testregistry.Image{Config: ocispec.Image{Config: ocispec.ImageConfig{Env: []string{"WALLET=" + samples.Wallet}}},
				Layers: [][]byte{packedAgent()}}
		},
			// Each blob passes alone; together they refuse the image at
			// its manifest.
			want: refused(verdict.Blocked), blobs: served(verdict.Allowed)},
		{name: "block and scan error", repo: "table/blockerror", image: func() testregistry.Image {
			img := im.miner("block and error")
			img.Layers = append(img.Layers, corruptLayer())
			return img
		}, want: refused(verdict.Blocked), blobs: refused(verdict.Blocked)},
		{name: "warn and clean", repo: "table/warnclean", image: func() testregistry.Image {
			img := im.clean("warn and clean")
			img.Layers = append(img.Layers, packedAgent())
			return img
		}, want: served(verdict.Allowed), blobs: served(verdict.Allowed)},
		{name: "allow override over a blocked layer", repo: "table/allowminer", image: func() testregistry.Image { return im.miner("allowed miner") },
			setup: allowImage, want: served(verdict.Overridden), blobs: served(verdict.Overridden)},
	}
}

// TestOneDecisionThreePaths runs every precedence case through the
// manifest path and the blob path of a server in front of a registry, and
// through pullgate scan's code, and checks all three against the table.
func TestOneDecisionThreePaths(t *testing.T) {
	hub := testregistry.Start(t)
	cases := precedenceCases()
	built := map[string]*testregistry.Built{}
	for _, c := range cases {
		img := c.image()
		b, err := img.Build()
		if err != nil {
			t.Fatal(err)
		}
		if got := hub.Push(t, c.repo, "1", img); got != b.Digest {
			t.Fatalf("%s: pushed %s, built %s", c.name, got, b.Digest)
		}
		built[c.name] = b
	}
	kb := knownBadList(t, built["known-bad manifest digest"].Digest, built["known-bad blob digest"].Layers[0].Digest)
	env := newTableEnv(t, hub, kb)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := built[c.name]
			if got := env.manifestPath(t, c, b); got != c.want {
				t.Errorf("manifest path: %s, want %s", got, c.want)
			}
			if got := env.scanPath(t, c, b); got != c.want {
				t.Errorf("pullgate scan: %s, want %s", got, c.want)
			}
			if got := env.blobPath(t, c, b); got != c.blobs {
				t.Errorf("blob path: %s, want %s", got, c.blobs)
			}
		})
	}
}

// tableEnv is what the three paths share: one upstream, one scanner, one
// policy, one known-bad list.
type tableEnv struct {
	up      *upstream.Registry
	sc      *scanner.Scanner
	kb      *scanner.KnownBad
	policy  scanner.Policy
	repoPol map[string]gate.RepoPolicy
}

func newTableEnv(t *testing.T, hub *testregistry.Registry, kb *scanner.KnownBad) *tableEnv {
	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: hub.URL(),
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scanner.New(scanner.Options{Workers: 2, KnownBadFiles: kb, Limits: scanner.Limits{MaxFiles: tableMaxFiles}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return &tableEnv{up: up, sc: sc, kb: kb, policy: scanner.DefaultPolicy(),
		repoPol: map[string]gate.RepoPolicy{"docker.io": {Deny: []string{"shady/*"}}}}
}

// server is a fresh pullgate (its own stores) and what it decided.
type server struct {
	url       string
	store     storage.Store
	decisions *decisionLog
}

func (e *tableEnv) server(t *testing.T) *server {
	t.Helper()
	ctx := context.Background()
	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t)
	log := &decisionLog{}
	srv, err := proxy.New(proxy.Options{Options: gate.Options{
		Upstreams: map[string]*upstream.Registry{"docker.io": e.up},
		Blobs:     blobs, Verdicts: store, Scanner: e.sc,
		Policy: e.repoPol, Decision: e.policy, KnownBad: knownBadDigests{e.sc},
		PrefetchPlatforms: []string{},
		Logger:            slog.New(log),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { srv.Close(context.Background()) })
	return &server{url: ts.URL, store: store, decisions: log}
}

func openStore(t *testing.T) storage.Store {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "verdicts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func (e *tableEnv) manifestPath(t *testing.T, c precedenceCase, b *testregistry.Built) answer {
	s := e.server(t)
	if c.setup != nil {
		c.setup(t, s.store, b)
	}
	status := get(t, s.url+"/v2/"+c.repo+"/manifests/1")
	return answer{s.decisions.outcome(t, b.Digest), status != http.StatusOK}
}

func (e *tableEnv) scanPath(t *testing.T, c precedenceCase, b *testregistry.Built) answer {
	st := openStore(t) // the operator's overrides, as a server has them
	if c.setup != nil {
		c.setup(t, st, b)
	}
	run := &scanRun{sc: e.sc, policy: e.policy, knownBad: e.kb, platform: "linux/amd64",
		upstreams: map[string]*upstream.Registry{"docker.io": e.up}, repoPolicy: e.repoPol, maxLayers: 500,
		overrides: func(s string) (storage.Override, error) { return st.Override(context.Background(), s) }}
	reports, err := run.reference(context.Background(), "docker.io/"+c.repo+":1")
	if err != nil || len(reports) != 1 {
		t.Fatalf("scan: %v %+v", err, reports)
	}
	return answer{reports[0].outcome, reports[0].refused}
}

// blobPath asks for each blob of the image on its own, as a client that
// has the manifest does (the store knows each blob's role, as a fetch of
// the manifest would have recorded), and sums up: the image is refused
// when any blob is, by the strongest refusal.
func (e *tableEnv) blobPath(t *testing.T, c precedenceCase, b *testregistry.Built) answer {
	s := e.server(t)
	if c.setup != nil {
		c.setup(t, s.store, b)
	}
	ctx := context.Background()
	name := "docker.io/" + c.repo
	roles := []gate.Ref{{Digest: b.ConfigDigest, Context: storage.ContextConfig}}
	for _, l := range b.Layers {
		roles = append(roles, gate.Ref{Digest: l.Digest, Context: gate.LayerContext(l.MediaType)})
	}
	var answers []answer
	for _, r := range roles {
		if err := s.store.PutLink(ctx, name, r.Digest, r.Context); err != nil {
			t.Fatal(err)
		}
		status := get(t, s.url+"/v2/"+c.repo+"/blobs/"+r.Digest.String())
		a := answer{verdict.Allowed, status != http.StatusOK}
		if o, ok := s.decisions.find(r.Digest); ok {
			a.Outcome = o
		} else if a.Refused {
			t.Fatalf("blob %s refused (%d) without a decision", r.Digest, status)
		}
		answers = append(answers, a)
	}
	return strongest(answers)
}

// strongest sums up the blob path: any refusal refuses the image (the
// first in this order); else it was served by an override if any blob was.
func strongest(as []answer) answer {
	for _, o := range []verdict.Outcome{verdict.Policy, verdict.Overridden, verdict.Blocked, verdict.Failed, verdict.UpstreamFailed, verdict.Pending} {
		for _, a := range as {
			if a.Refused && a.Outcome == o {
				return a
			}
		}
	}
	for _, a := range as {
		if a.Refused {
			return a
		}
	}
	for _, a := range as {
		if a.Outcome == verdict.Overridden {
			return a
		}
	}
	return served(verdict.Allowed)
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func put(t *testing.T, st storage.Store, o storage.Override) {
	t.Helper()
	o.Time = time.Now()
	if err := st.PutOverride(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

func putVerdict(t *testing.T, st storage.Store, v storage.Verdict) {
	t.Helper()
	if err := st.PutVerdict(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}

func knownBadList(t *testing.T, ds ...digest.Digest) *scanner.KnownBad {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known-bad.txt")
	var buf bytes.Buffer
	for _, d := range ds {
		fmt.Fprintln(&buf, d.String())
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	kb, err := scanner.LoadKnownBad(p)
	if err != nil {
		t.Fatal(err)
	}
	return kb
}

// decisionLog is a slog handler that keeps the server's decision records
// (the "decision" log line each event gets) by digest.
type decisionLog struct {
	mu   sync.Mutex
	by   map[string]verdict.Outcome
	last verdict.Outcome
}

func (l *decisionLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *decisionLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *decisionLog) WithGroup(string) slog.Handler            { return l }

func (l *decisionLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "decision" {
		return nil
	}
	var dgst, word string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "digest":
			dgst = a.Value.String()
		case "decision":
			word = a.Value.String()
		}
		return true
	})
	o, err := verdict.ParseOutcome(word)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]verdict.Outcome{}
	}
	l.by[dgst], l.last = o, o
	return nil
}

func (l *decisionLog) find(d digest.Digest) (verdict.Outcome, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.by[d.String()]
	return o, ok
}

func (l *decisionLog) outcome(t *testing.T, d digest.Digest) verdict.Outcome {
	t.Helper()
	if o, ok := l.find(d); ok {
		return o
	}
	// A name refused before the tag was resolved has no digest yet.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == 0 {
		t.Fatalf("no decision recorded for %s", d)
	}
	return l.last
}
