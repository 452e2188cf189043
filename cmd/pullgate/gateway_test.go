package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeSelfSigned writes a certificate for cn and its key.
func writeSelfSigned(t *testing.T, certPath, keyPath, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
}

func leafCN(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.Subject.CommonName
}

// A renewed certificate is picked up without a restart; a half-written
// pair keeps the old one in service.
func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeSelfSigned(t, certPath, keyPath, "old.example")
	r, err := newCertReloader(certPath, keyPath, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.get(nil)
	if cn := leafCN(t, c); cn != "old.example" {
		t.Fatalf("serving %s", cn)
	}

	writeFile(t, certPath, "not a certificate")
	r.lastCheck = time.Time{}
	if c, _ := r.get(nil); leafCN(t, c) != "old.example" {
		t.Fatal("a broken pair replaced the working certificate")
	}

	writeSelfSigned(t, certPath, keyPath, "new.example")
	future := time.Now().Add(time.Minute) // a distinct mtime even on coarse clocks
	for _, p := range []string{certPath, keyPath} {
		if err := os.Chtimes(p, future, future); err != nil {
			t.Fatal(err)
		}
	}
	r.lastCheck = time.Time{}
	if c, _ := r.get(nil); leafCN(t, c) != "new.example" {
		t.Fatalf("still serving %s after the files changed", leafCN(t, c))
	}
}

func TestGatewayConfigNeedsCertAndKey(t *testing.T) {
	var f serveFlags
	f.gateway.listen = "127.0.0.1:0"
	f.gateway.cert = "/x.crt"
	if _, err := f.resolve(func(string) string { return "" }); err == nil {
		t.Fatal("accepted a gateway without a key")
	}
	env := map[string]string{"PULLGATE_TLS_KEY": "/x.key"}
	c, err := f.resolve(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway != (GatewayConfig{Listen: "127.0.0.1:0", TLSCert: "/x.crt", TLSKey: "/x.key"}) {
		t.Fatalf("gateway config %+v", c.Gateway)
	}
}
