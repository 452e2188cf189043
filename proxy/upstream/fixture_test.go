package upstream

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

const (
	testIssuer  = "test-issuer"
	testService = "test-registry"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // distribution logs every request
	os.Exit(m.Run())
}

// fixture is a real distribution v3 registry with token auth, standing in
// for Docker Hub: a token issuer on its own server (auth.docker.io), the
// registry (registry-1.docker.io), and a "CDN" that blob GETs are
// redirected to.
type fixture struct {
	t        *testing.T
	registry *httptest.Server
	tokens   *httptest.Server
	cdn      *httptest.Server

	key *ecdsa.PrivateKey
	kid string

	// user and password, if set, are required at the token endpoint.
	user, password string
	// echoAuth makes the token endpoint's 401 body echo the Authorization
	// header, as a careless or hostile realm might.
	echoAuth bool

	mu          sync.Mutex
	requests    []string // "METHOD path" seen by the registry
	regAuth     []string // Authorization headers on registry blob GETs
	cdnAuth     []string // Authorization headers seen by the CDN
	tokenAuth   []string // user names in Basic auth at the token endpoint
	blobs       map[digest.Digest][]byte
	manifestRaw map[digest.Digest][]byte
}

type fixtureOption func(*fixture)

func withCredentials(user, password string) fixtureOption {
	return func(f *fixture) { f.user, f.password = user, password }
}

func withEchoAuth() fixtureOption { return func(f *fixture) { f.echoAuth = true } }

func newFixture(t *testing.T, opts ...fixtureOption) *fixture {
	t.Helper()
	f := &fixture{t: t, blobs: map[digest.Digest][]byte{}, manifestRaw: map[digest.Digest][]byte{}}
	for _, o := range opts {
		o(f)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: testIssuer},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	f.key, f.kid = key, token.GetJWKThumbprint(key.Public())

	f.tokens = httptest.NewServer(http.HandlerFunc(f.serveToken))
	t.Cleanup(f.tokens.Close)
	f.cdn = httptest.NewServer(http.HandlerFunc(f.serveCDN))
	t.Cleanup(f.cdn.Close)

	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
		Auth: configuration.Auth{"token": configuration.Parameters{
			"realm": f.tokens.URL + "/token", "issuer": testIssuer, "service": testService, "rootcertbundle": certPath,
		}},
	}
	cfg.HTTP.Secret = "fixture-secret"
	cfg.Log.AccessLog.Disabled = true
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	app := handlers.NewApp(ctx, cfg)
	f.registry = httptest.NewServer(f.wrap(app))
	t.Cleanup(f.registry.Close)
	return f
}

// wrap records requests and sends blob GETs that the registry would answer
// (auth checked by the registry itself, via HEAD) to the CDN with a 307.
func (f *fixture) wrap(app http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			f.mu.Lock()
			f.regAuth = append(f.regAuth, r.Header.Get("Authorization"))
			f.mu.Unlock()
			head := r.Clone(r.Context())
			head.Method = http.MethodHead
			rec := httptest.NewRecorder()
			app.ServeHTTP(rec, head)
			if rec.Code == http.StatusOK {
				dgst := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
				http.Redirect(w, r, f.cdn.URL+"/cdn/"+dgst+"?sig=abc", http.StatusTemporaryRedirect)
				return
			}
		}
		app.ServeHTTP(w, r)
	})
}

func (f *fixture) serveCDN(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.cdnAuth = append(f.cdnAuth, r.Header.Get("Authorization"))
	b, ok := f.blobs[digest.Digest(strings.TrimPrefix(r.URL.Path, "/cdn/"))]
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.Write(b)
}

// serveToken issues a JWT per the Docker token spec, granting whatever
// repository scope was asked for to anyone who passes the credential check.
func (f *fixture) serveToken(w http.ResponseWriter, r *http.Request) {
	user, pass, hasBasic := r.BasicAuth()
	f.mu.Lock()
	if hasBasic {
		f.tokenAuth = append(f.tokenAuth, user)
	}
	f.mu.Unlock()
	if f.user != "" && (!hasBasic || user != f.user || pass != f.password) {
		msg := "authentication required"
		if f.echoAuth {
			msg = "bad credentials: " + r.Header.Get("Authorization") + " " + pass
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": msg}}})
		return
	}
	if r.URL.Query().Get("service") != testService {
		http.Error(w, "wrong service", http.StatusBadRequest)
		return
	}
	var access []*token.ResourceActions
	for _, scope := range r.URL.Query()["scope"] {
		for s := range strings.FieldsSeq(scope) {
			parts := strings.Split(s, ":")
			if len(parts) != 3 {
				continue
			}
			access = append(access, &token.ResourceActions{Type: parts[0], Name: parts[1], Actions: strings.Split(parts[2], ",")})
		}
	}
	now := time.Now()
	claims := token.ClaimSet{
		Issuer: testIssuer, Subject: user, Audience: token.AudienceList{testService},
		Expiration: now.Add(5 * time.Minute).Unix(), NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(),
		JWTID: fmt.Sprint(now.UnixNano()), Access: access,
	}
	jwt, err := f.sign(claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": jwt, "expires_in": 300, "issued_at": now.Format(time.RFC3339)})
}

// sign makes an ES256 JWS; the kid is the key's JWK thumbprint, which
// distribution derives from the rootcertbundle.
func (f *fixture) sign(claims token.ClaimSet) (string, error) {
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": f.kid})
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signingInput))
	rr, ss, err := ecdsa.Sign(rand.Reader, f.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return signingInput + "." + enc.EncodeToString(sig), nil
}

// image is what push stored.
type image struct {
	manifest []byte
	desc     ocispec.Descriptor
	config   ocispec.Descriptor
	layer    ocispec.Descriptor
	layerRaw []byte
}

// push uploads a small OCI image to repo:tag over HTTP with a push-scoped
// token, as a client would.
func (f *fixture) push(repo, tag string, layerContent []byte) image {
	f.t.Helper()
	ctx := context.Background()
	u, _ := url.Parse(f.registry.URL)
	r, err := remote.NewRepository(u.Host + "/" + repo)
	if err != nil {
		f.t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &auth.Client{
		Client:     f.registry.Client(),
		Cache:      auth.NewCache(),
		Credential: auth.StaticCredential(u.Host, auth.Credential{Username: f.user, Password: f.password}),
	}
	put := func(mediaType string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := r.Push(ctx, d, bytes.NewReader(b)); err != nil && !strings.Contains(err.Error(), "already exists") {
			f.t.Fatalf("push %s: %v", mediaType, err)
		}
		f.mu.Lock()
		f.blobs[d.Digest] = b
		f.mu.Unlock()
		return d
	}
	img := image{layerRaw: layerContent}
	img.config = put(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	img.layer = put(ocispec.MediaTypeImageLayer, layerContent)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.config, Layers: []ocispec.Descriptor{img.layer},
	}
	img.manifest, _ = json.Marshal(m)
	img.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(img.manifest), Size: int64(len(img.manifest))}
	if err := r.PushReference(ctx, img.desc, bytes.NewReader(img.manifest), tag); err != nil {
		f.t.Fatalf("push manifest: %v", err)
	}
	f.mu.Lock()
	f.manifestRaw[img.desc.Digest] = img.manifest
	f.requests = nil // tests look only at their own requests
	f.mu.Unlock()
	return img
}

func (f *fixture) client(t *testing.T, user, password string) *Registry {
	t.Helper()
	// The token service and the CDN listen on other loopback ports, as
	// auth.docker.io and the CDN are other hosts than registry-1.docker.io.
	r, err := New(Config{Name: "docker.io", URL: f.registry.URL, Username: user, Password: password, UserAgent: "pullgate-test",
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) seen() (requests, regAuth, cdnAuth, tokenAuth []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...), append([]string(nil), f.regAuth...),
		append([]string(nil), f.cdnAuth...), append([]string(nil), f.tokenAuth...)
}
