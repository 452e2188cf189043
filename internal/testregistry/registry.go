package testregistry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	_ "github.com/distribution/distribution/v3/registry/auth/token" // registers the "token" access controller
)

// DefaultPullLimit is the ratelimit-limit Docker Hub advertises to anonymous
// clients: 100 manifest GETs per 6 hours.
const DefaultPullLimit = 100

// Registry is a running stand-in for Docker Hub. All methods are safe for
// concurrent use.
type Registry struct {
	user, pass   string
	echoAuth     bool
	enforceLimit bool
	pullLimit    int
	cdnHost      string

	driver storagedriver.StorageDriver
	ns     distribution.Namespace
	tokens *tokenIssuer
	app    http.Handler

	url, cdnURL string
	down        atomic.Bool
	closed      chan struct{} // closed when the test ends; releases blocked requests

	mu            sync.Mutex
	blobGets      map[digest.Digest]int
	cdnGets       map[digest.Digest]int
	cdnAuth       map[digest.Digest]int
	manifestGets  map[string]int
	manifestHeads map[string]int
	pulls         int
	requests      []Request
	tokenRequests []TokenRequest
	faults        map[digest.Digest]*faultEntry
}

// TokenRequest is one request to the token endpoint.
type TokenRequest struct {
	User   string   // "" for anonymous
	Scopes []string // the requested scopes
}

var (
	driverSeq   atomic.Int64
	logrusQuiet sync.Once
)

// driverFactory hands one shared driver to handlers.NewApp, so that Push
// (which writes through distribution's storage library) and the registry see
// the same content.
type driverFactory struct{ d storagedriver.StorageDriver }

func (f driverFactory) Create(context.Context, map[string]any) (storagedriver.StorageDriver, error) {
	return f.d, nil
}

// Start runs a registry and its CDN on free loopback ports until the test
// ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{
		pullLimit: DefaultPullLimit,
		// The CDN is another host (falling back to 127.0.0.1 where 127.0.0.2
		// cannot be bound), as production.cloudflare.docker.com is from
		// registry-1.docker.io: clients strip Authorization only on a
		// redirect to a different host.
		cdnHost:       "127.0.0.2",
		blobGets:      map[digest.Digest]int{},
		cdnGets:       map[digest.Digest]int{},
		cdnAuth:       map[digest.Digest]int{},
		manifestGets:  map[string]int{},
		manifestHeads: map[string]int{},
		faults:        map[digest.Digest]*faultEntry{},
		closed:        make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	// distribution logs every 4xx it answers at error level through the
	// global logrus logger (its context package is internal, so the App
	// cannot be given its own); the tests assert on behaviour instead.
	logrusQuiet.Do(func() { logrus.SetLevel(logrus.FatalLevel) })

	ln, cdnLn, err := r.listen()
	if err != nil {
		t.Fatalf("testregistry: %v", err)
	}
	r.tokens, err = newTokenIssuer(t.TempDir())
	if err != nil {
		ln.Close()
		cdnLn.Close()
		t.Fatalf("testregistry: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.newApp(ctx); err != nil {
		cancel()
		ln.Close()
		cdnLn.Close()
		t.Fatalf("testregistry: %v", err)
	}

	srv := &http.Server{Handler: http.HandlerFunc(r.serveRegistry), ReadHeaderTimeout: 10 * time.Second}
	cdn := &http.Server{Handler: http.HandlerFunc(r.serveCDN), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { _ = cdn.Serve(cdnLn) }()
	t.Cleanup(func() {
		close(r.closed)
		srv.Close()
		cdn.Close()
		cancel()
	})
	return r
}

// listen opens the registry's and the CDN's listeners and sets their URLs.
func (r *Registry) listen() (ln, cdnLn net.Listener, err error) {
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	cdnLn, err = net.Listen("tcp", net.JoinHostPort(r.cdnHost, "0"))
	if err != nil {
		cdnLn, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("listen for CDN: %w", err)
		}
	}
	r.url = "http://" + ln.Addr().String()
	r.cdnURL = "http://" + cdnLn.Addr().String()
	return ln, cdnLn, nil
}

// newApp builds the distribution registry over an in-memory driver of its
// own, with token auth from r.tokens.
func (r *Registry) newApp(ctx context.Context) error {
	r.driver = inmemory.New()
	driverName := fmt.Sprintf("testregistry-%d", driverSeq.Add(1))
	factory.Register(driverName, driverFactory{r.driver})
	ns, err := storage.NewRegistry(ctx, r.driver)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	r.ns = ns
	config := &configuration.Configuration{}
	config.Storage = configuration.Storage{
		driverName:    configuration.Parameters{},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		"delete":      configuration.Parameters{"enabled": true},
	}
	config.Auth = configuration.Auth{"token": configuration.Parameters{
		"realm":          r.url + "/token",
		"service":        Service,
		"issuer":         Issuer,
		"rootcertbundle": r.tokens.certPath,
	}}
	config.HTTP.Secret = rand.Text()
	config.Log.AccessLog.Disabled = true
	r.app = handlers.NewApp(ctx, config)
	return nil
}

// URL is the registry's base URL, "http://127.0.0.1:N".
func (r *Registry) URL() string { return r.url }

// Host is the registry's "127.0.0.1:N", as used in image references.
func (r *Registry) Host() string { return r.url[len("http://"):] }

// CDNURL is the base URL blob downloads are redirected to.
func (r *Registry) CDNURL() string { return r.cdnURL }

// SetDown makes every endpoint (registry, token, CDN) answer 503 while down.
func (r *Registry) SetDown(down bool) { r.down.Store(down) }

var (
	blobPath     = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$`)
	manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

func (r *Registry) serveRegistry(w http.ResponseWriter, req *http.Request) {
	r.record(req, false)
	if r.down.Load() {
		http.Error(w, "testregistry is down", http.StatusServiceUnavailable)
		return
	}
	if req.URL.Path == "/token" {
		r.serveToken(w, req)
		return
	}
	if m := manifestPath.FindStringSubmatch(req.URL.Path); m != nil && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		r.serveManifest(w, req, m[1], m[2])
		return
	}
	if m := blobPath.FindStringSubmatch(req.URL.Path); m != nil && req.Method == http.MethodGet {
		r.serveBlob(w, req, m[1], digest.Digest(m[2]))
		return
	}
	r.app.ServeHTTP(w, req)
}

func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	key := repo + "|" + ref
	r.mu.Lock()
	if req.Method == http.MethodHead {
		r.manifestHeads[key]++
	} else {
		r.manifestGets[key]++
		if req.Header.Get("Authorization") != "" {
			r.pulls++
		}
	}
	pulls := r.pulls
	r.mu.Unlock()

	remaining := max(r.pullLimit-pulls, 0)
	w.Header().Set("ratelimit-limit", fmt.Sprintf("%d;w=21600", r.pullLimit))
	w.Header().Set("ratelimit-remaining", fmt.Sprintf("%d;w=21600", remaining))
	w.Header().Set("docker-ratelimit-source", "127.0.0.1")
	if r.enforceLimit && req.Method == http.MethodGet && pulls > r.pullLimit {
		writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS",
			"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit")
		return
	}

	dgst, err := digest.Parse(ref)
	if err != nil {
		dgst = r.resolveTag(req.Context(), repo, ref)
	}
	f := r.takeFault(dgst, anyFault)
	if f == nil {
		r.app.ServeHTTP(w, req)
		return
	}
	if f.Status != 0 {
		f.writeStatus(w)
		return
	}
	// Capture what the registry would answer, then send it through the fault.
	rec := httptest.NewRecorder()
	r.app.ServeHTTP(rec, req)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	if rec.Code != http.StatusOK {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	r.serveFault(w, req, f, rec.Body.Bytes())
}

func (r *Registry) resolveTag(ctx context.Context, repo, tag string) digest.Digest {
	named, err := reference.WithName(repo)
	if err != nil {
		return ""
	}
	rp, err := r.ns.Repository(ctx, named)
	if err != nil {
		return ""
	}
	desc, err := rp.Tags(ctx).Get(ctx, tag)
	if err != nil {
		return ""
	}
	return desc.Digest
}

// serveBlob answers a blob GET like Docker Hub: after the registry's own
// auth check (a HEAD of the same blob), a 307 to the CDN.
func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, repo string, dgst digest.Digest) {
	r.mu.Lock()
	r.blobGets[dgst]++
	r.mu.Unlock()
	if f := r.takeFault(dgst, statusFault); f != nil {
		f.writeStatus(w)
		return
	}
	probe := req.Clone(req.Context())
	probe.Method = http.MethodHead
	rec := httptest.NewRecorder()
	r.app.ServeHTTP(rec, probe)
	if rec.Code != http.StatusOK {
		// Let the registry answer the GET itself: the same error, with body.
		r.app.ServeHTTP(w, req)
		return
	}
	loc := fmt.Sprintf("%s/cdn/%s/%s?expires=%d", r.cdnURL, repo, dgst, time.Now().Add(20*time.Minute).Unix())
	w.Header().Set("Location", loc)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusTemporaryRedirect)
	_, _ = fmt.Fprintf(w, "<a href=%q>Temporary Redirect</a>.\n", loc)
}

var cdnPath = regexp.MustCompile(`^/cdn/(.+)/(sha256:[a-f0-9]{64})$`)

// serveCDN serves blob bytes without auth, as Docker Hub's CDN does for the
// signed URLs it redirects to.
func (r *Registry) serveCDN(w http.ResponseWriter, req *http.Request) {
	r.record(req, true)
	if r.down.Load() {
		http.Error(w, "testregistry CDN is down", http.StatusServiceUnavailable)
		return
	}
	m := cdnPath.FindStringSubmatch(req.URL.Path)
	if m == nil || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		http.NotFound(w, req)
		return
	}
	dgst := digest.Digest(m[2])
	r.mu.Lock()
	r.cdnGets[dgst]++
	if req.Header.Get("Authorization") != "" {
		r.cdnAuth[dgst]++
	}
	r.mu.Unlock()
	r.serveBlobBytes(w, req, m[1], dgst)
}

func (r *Registry) serveBlobBytes(w http.ResponseWriter, req *http.Request, repo string, dgst digest.Digest) {
	data, err := r.blob(req.Context(), repo, dgst)
	if err != nil {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", dgst.String())
	w.Header().Set("Accept-Ranges", "bytes")
	if f := r.takeFault(dgst, byteFault); f != nil {
		r.serveFault(w, req, f, data)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(data)
}

func (r *Registry) blob(ctx context.Context, repo string, dgst digest.Digest) ([]byte, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, err
	}
	rp, err := r.ns.Repository(ctx, named)
	if err != nil {
		return nil, err
	}
	// Open, not Get: distribution's BlobStore.Get refuses blobs over 4 MiB
	// ("storage: read exceeds limit").
	rc, err := rp.Blobs(ctx).Open(ctx, dgst)
	if errors.Is(err, distribution.ErrBlobUnknown) {
		return nil, fmt.Errorf("blob %s unknown to %s", dgst, repo)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
