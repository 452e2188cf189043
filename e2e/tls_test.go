package e2e

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// pullgate serves its registry port over TLS (certificate from files): a
// dockerd that trusts the CA uses it as an https mirror, and sees refusals
// by explicit host, with no insecure-registries entry.
func TestTLSMirror(t *testing.T) {
	hub := testregistry.Start(t)
	hub.Push(t, "library/e2e-tls", "1", testregistry.CleanImage("tls"))
	hub.Push(t, "someone/miner", "1", testregistry.MinerImage("tls"))

	ca := newTestCA(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, 2, cert, key, "127.0.0.1")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	pg := StartPullgate(t, PullgateOptions{
		Upstreams: map[string]string{"docker.io": hub.URL()},
		Extra:     []string{"--listen-cert", cert, "--listen-key", key},
		TLSRoots:  roots,
	})
	resp, err := pg.Client().Get(pg.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil {
		t.Fatal("the registry port did not answer over TLS")
	}

	d := StartDockerd(t, DockerdOptions{Mirrors: []string{pg.URL()}, TrustPEM: ca.pem})
	if out, err := d.Pull(pullCtx(t), "e2e-tls:1"); err != nil {
		t.Fatalf("pull through the https mirror: %v\n%s", err, out)
	}
	if !strings.Contains(pg.Log(), "decision=allowed") {
		t.Fatal("the pull did not go through pullgate")
	}
	out, err := d.Pull(pullCtx(t), pg.Addr()+"/someone/miner:1")
	if err == nil || !strings.Contains(out, "denied: pullgate: docker.io/someone/miner@") {
		t.Fatalf("miner by explicit host over TLS: %v\n%s", err, out)
	}
}
