package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
)

// testCA is a throwaway certificate authority, standing in for the
// corporate CA that clients trust in gateway mode.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pullgate e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a server certificate for names, signed by the CA, to
// certPath and keyPath (replacing them whole, as a renewal would).
func (ca *testCA) issue(t *testing.T, serial int64, certPath, keyPath string, names ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var dnsNames []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dnsNames = append(dnsNames, n)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: dnsNames, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string][]byte{
		keyPath:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		certPath: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

// Gateway mode: a dockerd whose /etc/hosts sends registry-1.docker.io to
// pullgate's TLS listener, with no mirror configured at all, pulls clean
// images through it and sees the reason when pullgate refuses one.
func TestGatewayModeDockerPull(t *testing.T) {
	hub := testregistry.Start(t)
	cleanImg := harmlessImage("gateway")
	clean := hub.Push(t, "library/e2e-gateway", "1", cleanImg)
	miner := hub.Push(t, "someone/miner", "1", testregistry.MinerImage("miner"))

	ca := newTestCA(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	names := []string{"registry-1.docker.io", "index.docker.io", "quay.io"}
	ca.issue(t, 2, certPath, keyPath, names...)
	pg := StartPullgate(t, PullgateOptions{
		Upstreams: map[string]string{"docker.io": hub.URL()},
		Extra:     []string{"--gateway-listen", "127.0.0.1:443", "--tls-cert", certPath, "--tls-key", keyPath},
	})

	d := StartDockerd(t, DockerdOptions{
		Hosts:    "127.0.0.1 localhost\n127.0.0.1 registry-1.docker.io\n",
		TrustPEM: ca.pem,
	})
	if mirrors, err := d.Mirrors(); err != nil || len(mirrors) != 0 {
		t.Fatalf("dockerd mirrors %q (%v), want none", mirrors, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if out, err := d.Pull(ctx, "e2e-gateway:1"); err != nil {
		t.Fatalf("docker pull through the gateway: %v\n%s", err, out)
	}
	if digests, err := d.RepoDigests("e2e-gateway:1"); err != nil || !slices.Contains(digests, "e2e-gateway@"+clean.String()) {
		t.Fatalf("RepoDigests %q (%v), want e2e-gateway@%s", digests, err, clean)
	}
	if n := upstreamBlobGets(hub, cleanImg); n != len(cleanImg.Layers) {
		t.Errorf("%d layer fetches upstream, want %d", n, len(cleanImg.Layers))
	}

	out, err := d.Pull(ctx, "someone/miner:1")
	if err == nil {
		t.Fatalf("pulled the miner through the gateway:\n%s", out)
	}
	if want := "denied: pullgate: docker.io/someone/miner@" + miner.String(); !strings.Contains(out, want) || !strings.Contains(out, "file /usr/bin/kworker matched") {
		t.Fatalf("docker pull output lacks %q:\n%s", want, out)
	}

	// A host name pullgate has no upstream for is refused, not answered
	// with Docker Hub's content.
	status, body := gatewayGet(t, ca, "quay.io", "/v2/library/e2e-gateway/manifests/1")
	if status != http.StatusForbidden || !strings.Contains(body, `registry \"quay.io\" is not configured here`) {
		t.Errorf("GET as quay.io: %d %s", status, body)
	}

	// A renewed certificate is served without a restart.
	ca.issue(t, 3, certPath, keyPath, names...)
	testsync.WaitFor(t, 10*time.Second, "pullgate to serve the renewed certificate", func() bool { return gatewaySerial(t, ca) == 3 })
	if !pg.Running() {
		t.Fatal("pullgate stopped")
	}
}

func gatewayClient(ca *testCA, serverName string) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, "127.0.0.1:443")
		},
		DisableKeepAlives: true,
	}}
}

func gatewayGet(t *testing.T, ca *testCA, host, path string) (int, string) {
	t.Helper()
	resp, err := gatewayClient(ca, host).Get("https://" + host + path)
	if err != nil {
		t.Fatalf("GET https://%s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// gatewaySerial is the serial number of the certificate pullgate serves
// now, or 0 if the handshake failed.
func gatewaySerial(t *testing.T, ca *testCA) int64 {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:443",
		&tls.Config{RootCAs: pool, ServerName: "registry-1.docker.io"})
	if err != nil {
		return 0
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}
