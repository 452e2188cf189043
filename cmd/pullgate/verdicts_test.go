package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/samples"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/bolt"
)

const (
	cliAdminToken    = "cli-admin-token-0123456789"
	cliReadOnlyToken = "cli-readonly-token-0123456789"
)

// A real pullgate (in process) in front of a real registry, and the CLI
// against its admin API.
func TestVerdictsCLI(t *testing.T) {
	ctx := context.Background()
	hub := testregistry.Start(t)
	miner := testregistry.Image{Layers: [][]byte{
		testregistry.Layer(testregistry.File{Path: "etc/motd", Data: []byte("hi\n")}),
		testregistry.Layer(testregistry.File{Path: "usr/bin/kworker", Mode: 0o755, Data: samples.XMRig()}),
	}}
	mdgst := hub.Push(t, "someone/miner", "1", miner)
	bad := digest.FromBytes(miner.Layers[1])

	up, err := upstream.New(upstream.Config{Name: "docker.io", URL: hub.URL(),
		// The stand-in's CDN listens on another loopback address.
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := storage.NewInMemoryBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(t.TempDir(), "verdicts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	audit, err := storage.OpenFileAuditLog(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	sc, err := scanner.New(scanner.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	srv, err := proxy.New(proxy.Options{
		Options: gate.Options{Upstreams: map[string]*upstream.Registry{"docker.io": up}, Blobs: blobs, Verdicts: store, Scanner: sc,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Admin: proxy.AdminOptions{Token: cliAdminToken, ReadOnlyToken: cliReadOnlyToken, Audit: audit},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { srv.Close(context.Background()) })

	resp, err := http.Get(ts.URL + "/v2/someone/miner/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("miner pull: %d", resp.StatusCode)
	}

	env := map[string]string{"PULLGATE_URL": ts.URL, "PULLGATE_ADMIN_TOKEN": cliAdminToken}
	old := getenv
	getenv = func(k string) string { return env[k] }
	t.Cleanup(func() { getenv = old })
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"verdicts"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := cli("ls")
	if code != 0 || !strings.Contains(out, "docker.io/someone/miner:1") || !strings.Contains(out, mdgst.String()) || !strings.Contains(out, "/usr/bin/kworker") {
		t.Fatalf("ls: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli("allow", mdgst.String()); code != 1 || !strings.Contains(errs, "--reason is required") {
		t.Fatalf("allow without a reason: %d %s", code, errs)
	}
	code, out, errs = cli("allow", "docker.io/someone/miner@"+mdgst.String(), "--reason", "reviewed")
	// One record: the image's blobs are served through it by relation.
	if code != 0 || !strings.Contains(out, "allow "+mdgst.String()) || strings.Contains(out, "allow "+bad.String()) {
		t.Fatalf("allow: %d\n%s%s", code, out, errs)
	}
	code, out, _ = cli("show", mdgst.String())
	if code != 0 || !strings.Contains(out, "override\tallow by admin") && !strings.Contains(out, "allow by admin") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	if !strings.Contains(out, bad.String()+" blocked") || !strings.Contains(out, "audit") {
		t.Errorf("show lacks the blob's verdict, its override or the audit trail:\n%s", out)
	}
	if code, out, errs := cli("deny", "someone/other", "--reason", "unknown publisher", "--json"); code != 0 || !strings.Contains(out, `"subject": "docker.io/someone/other"`) {
		t.Fatalf("deny: %d %s %s", code, out, errs)
	}
	if code, out, _ := cli("rm", mdgst.String()); code != 0 || !strings.Contains(out, "removed override on "+mdgst.String()) {
		t.Fatalf("rm: %d %s", code, out)
	}

	env["PULLGATE_ADMIN_TOKEN"] = cliReadOnlyToken
	if code, out, _ := cli("ls"); code != 0 || !strings.Contains(out, "docker.io/someone/other") {
		t.Fatalf("read-only ls: %d %s", code, out)
	}
	if code, _, errs := cli("deny", "someone/x", "--reason", "r"); code != 1 || !strings.Contains(errs, "read-only") {
		t.Fatalf("read-only deny: %d %s", code, errs)
	}
	env["PULLGATE_ADMIN_TOKEN"] = "wrong-token-0123456789"
	if code, _, errs := cli("ls"); code != 1 || !strings.Contains(errs, "401") || strings.Contains(errs, "wrong-token") {
		t.Fatalf("wrong token: %d %s", code, errs)
	}
	delete(env, "PULLGATE_ADMIN_TOKEN")
	if code, _, errs := cli("ls"); code != 1 || !strings.Contains(errs, "no token") {
		t.Fatalf("no token: %d %s", code, errs)
	}
	if code, _, _ := cli("frobnicate"); code != 2 {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}
