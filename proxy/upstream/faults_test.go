package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// faultServer is a plain httptest server (no auth) for answers a real
// registry would not give.
func faultServer(t *testing.T, h http.HandlerFunc) (*Registry, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r, err := New(Config{Name: "docker.io", URL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.backoff = time.Millisecond
	return r, srv
}

var manifestBody = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)

func TestManifestDigestMismatch(t *testing.T) {
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", MediaTypeOCIManifest)
		w.Write([]byte(`{"schemaVersion":2,"evil":true}`))
	})
	_, _, err := r.Manifest(context.Background(), "library/alpine", digest.FromBytes(manifestBody), nil)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
}

func TestManifestTruncated(t *testing.T) {
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(manifestBody)))
		w.Write(manifestBody[:10])
	})
	_, _, err := r.Manifest(context.Background(), "library/alpine", digest.FromBytes(manifestBody), nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
}

func TestManifestTooLarge(t *testing.T) {
	big := strings.Repeat(" ", MaxManifestSize+1)
	for _, declare := range []bool{true, false} {
		r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
			if !declare {
				w.Header().Set("Transfer-Encoding", "chunked")
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, big)
		})
		_, _, err := r.Manifest(context.Background(), "library/alpine", digest.FromString(big), nil)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("declared=%v: err = %v, want ErrTooLarge", declare, err)
		}
	}
}

func TestBlobTruncated(t *testing.T) {
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write(make([]byte, 100))
	})
	rc, size, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if size != 1000 {
		t.Errorf("size = %d, want 1000", size)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read err = %v, want unexpected EOF", err)
	}
}

func TestRateLimited(t *testing.T) {
	var calls atomic.Int32
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "42")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`)
	})
	_, _, err := r.Manifest(context.Background(), "library/alpine", digest.FromBytes(manifestBody), nil)
	if !IsRateLimited(err) || IsNotFound(err) {
		t.Fatalf("err = %v, want rate limited", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter != 42*time.Second || e.Code != "TOOMANYREQUESTS" {
		t.Fatalf("error %#v, want RetryAfter 42s and code TOOMANYREQUESTS", e)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("429 was retried: %d calls", n)
	}
}

func TestRetryAfterDate(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":     0,
		"0":    0,
		"120":  2 * time.Minute,
		"-3":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	d := digest.FromBytes(manifestBody)
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Ratelimit-Limit", "100;w=21600")
		w.Header().Set("Ratelimit-Remaining", "76;w=21600")
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Content-Type", MediaTypeOCIManifest)
	})
	if got := r.RateLimit(); got != (RateLimit{}) {
		t.Fatalf("RateLimit before any request = %+v, want zero", got)
	}
	before := time.Now()
	if _, err := r.Resolve(context.Background(), "library/alpine", "latest", nil); err != nil {
		t.Fatal(err)
	}
	got := r.RateLimit()
	if got.Limit != 100 || got.Remaining != 76 || got.Window != 6*time.Hour || got.Seen.Before(before) {
		t.Fatalf("RateLimit = %+v", got)
	}
}

func TestParseRateLimit(t *testing.T) {
	cases := []struct {
		in     string
		n      int
		window time.Duration
		ok     bool
	}{
		{"100;w=21600", 100, 6 * time.Hour, true},
		{"0", 0, 0, true},
		{" 5 ; w=60 ; comment=x", 5, time.Minute, true},
		{"", 0, 0, false},
		{"lots", 0, 0, false},
	}
	for _, c := range cases {
		n, w, ok := parseRateLimit(c.in)
		if n != c.n || w != c.window || ok != c.ok {
			t.Errorf("parseRateLimit(%q) = %d, %s, %v; want %d, %s, %v", c.in, n, w, ok, c.n, c.window, c.ok)
		}
	}
}

func TestResolveFallsBackToGETWithoutDigestHeader(t *testing.T) {
	var heads, gets atomic.Int32
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodHead {
			heads.Add(1)
		} else {
			gets.Add(1)
		}
		if got := req.Header.Get("Accept"); !strings.Contains(got, MediaTypeDockerManifest) || !strings.Contains(got, MediaTypeOCIIndex) {
			t.Errorf("Accept = %q, want all four manifest types", got)
		}
		w.Header().Set("Content-Type", MediaTypeOCIManifest)
		w.Write(manifestBody)
	})
	desc, err := r.Resolve(context.Background(), "library/alpine", "latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Descriptor{MediaType: MediaTypeOCIManifest, Digest: digest.FromBytes(manifestBody), Size: int64(len(manifestBody))}
	if desc != want || heads.Load() != 1 || gets.Load() != 1 {
		t.Fatalf("Resolve = %+v (HEADs %d, GETs %d), want %+v after one HEAD and one GET", desc, heads.Load(), gets.Load(), want)
	}
}

func TestResolveByDigestRejectsOtherDigest(t *testing.T) {
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Docker-Content-Digest", digest.FromString("other").String())
	})
	_, err := r.Resolve(context.Background(), "library/alpine", digest.FromBytes(manifestBody).String(), nil)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
}

func TestRetriesTransientStatus(t *testing.T) {
	var calls atomic.Int32
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write(manifestBody)
	})
	if _, _, err := r.Manifest(context.Background(), "library/alpine", digest.FromBytes(manifestBody), nil); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}

	calls.Store(-100)
	_, _, err := r.Manifest(context.Background(), "library/alpine", digest.FromBytes(manifestBody), nil)
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want 503 after retries", err)
	}
	if n := calls.Load(); n != -100+1+DefaultRetries {
		t.Fatalf("%d calls, want %d", n+100, 1+DefaultRetries)
	}
}

func TestRedirectLoopCapped(t *testing.T) {
	var calls atomic.Int32
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) {
		calls.Add(1)
		http.Redirect(w, req, req.URL.Path, http.StatusTemporaryRedirect)
	})
	_, _, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x"))
	if err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("err = %v, want redirect cap", err)
	}
	if n := calls.Load(); n > maxRedirects+1 {
		t.Fatalf("%d requests for a redirect loop", n)
	}
}

func TestRedirectDowngradeRefused(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t.Error("plain http CDN was contacted")
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, plain.URL+"/blob", http.StatusTemporaryRedirect)
	}))
	defer tlsSrv.Close()
	r, err := New(Config{Name: "example.test", URL: tlsSrv.URL, Transport: tlsSrv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Blob(context.Background(), "library/alpine", digest.FromString("x")); err == nil || !strings.Contains(err.Error(), "https to http") {
		t.Fatalf("err = %v, want downgrade refused", err)
	}
}

func TestHeaderTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-req.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)

	r, err := New(Config{URL: srv.URL, Timeout: 50 * time.Millisecond, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = r.Manifest(context.Background(), "library/alpine", digest.FromBytes(manifestBody), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want header timeout", err)
	}

	r, err = New(Config{URL: srv.URL, Timeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srvSaw := make(chan struct{})
	go func() {
		<-srvSaw
		cancel()
	}()
	r.client.Client.Transport = notify{srv.Client().Transport, srvSaw}
	_, err = r.Resolve(ctx, "library/alpine", "latest", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// notify closes ch once the first request has been handed to the transport.
type notify struct {
	rt http.RoundTripper
	ch chan struct{}
}

func (n notify) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-n.ch:
	default:
		close(n.ch)
	}
	return n.rt.RoundTrip(req)
}

func TestNewValidatesURL(t *testing.T) {
	cases := []struct {
		cfg     Config
		wantURL string
		wantErr string
	}{
		{cfg: Config{Name: "docker.io"}, wantURL: DockerHubURL},
		{cfg: Config{Name: "ghcr.io"}, wantURL: "https://ghcr.io"},
		{cfg: Config{Name: "local", URL: "http://127.0.0.1:5001"}, wantURL: "http://127.0.0.1:5001"},
		{cfg: Config{Name: "local", URL: "http://localhost:5001/"}, wantURL: "http://localhost:5001"},
		{cfg: Config{Name: "local", URL: "http://[::1]:5001"}, wantURL: "http://[::1]:5001"},
		{cfg: Config{Name: "lan", URL: "http://10.0.0.5:5000"}, wantErr: "needs Insecure"},
		{cfg: Config{Name: "lan", URL: "http://registry.example.com"}, wantErr: "needs Insecure"},
		{cfg: Config{Name: "lan", URL: "http://10.0.0.5:5000", Insecure: true}, wantURL: "http://10.0.0.5:5000"},
		{cfg: Config{Name: "x", URL: "https://user:pw@example.com"}, wantErr: "credentials"},
		{cfg: Config{Name: "x", URL: "ftp://example.com"}, wantErr: "scheme"},
		{cfg: Config{}, wantErr: "Name or a URL"},
	}
	for _, c := range cases {
		r, err := New(c.cfg)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("New(%+v) err = %v, want %q", c.cfg, err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("New error leaks the URL password: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%+v): %v", c.cfg, err)
			continue
		}
		if r.URL() != c.wantURL {
			t.Errorf("New(%+v).URL() = %q, want %q", c.cfg, r.URL(), c.wantURL)
		}
	}
}

func TestRejectsBadNames(t *testing.T) {
	var calls atomic.Int32
	r, _ := faultServer(t, func(w http.ResponseWriter, req *http.Request) { calls.Add(1) })
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "../../etc", "latest", nil); err == nil {
		t.Error("Resolve accepted a bad repository")
	}
	if _, err := r.Resolve(ctx, "library/alpine", "a/../b", nil); err == nil {
		t.Error("Resolve accepted a bad tag")
	}
	if _, _, err := r.Blob(ctx, "library/alpine", "sha256:short"); err == nil {
		t.Error("Blob accepted a bad digest")
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests sent for invalid input", n)
	}
}

// No upstream, nor a redirect from one, can make pullgate connect to a
// link-local address (cloud metadata) or an unspecified one. The refusal
// comes before any packet is sent.
func TestForbiddenAddressesAreNeverDialled(t *testing.T) {
	for _, base := range []string{"http://169.254.169.254", "http://[fe80::1%25lo]:80", "http://0.0.0.0:5000"} {
		r, err := New(Config{Name: "docker.io", URL: base, Insecure: true, Retries: -1})
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		_, _, err = r.Blob(t.Context(), "library/x", digest.FromString("x"))
		if !errors.Is(err, errForbiddenAddress) {
			t.Errorf("%s: %v, want a refusal to connect", base, err)
		}
	}
	// A redirect from a real (loopback) upstream to such an address too.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return
		}
		http.Redirect(w, req, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	r, err := New(Config{Name: "docker.io", URL: redirector.URL, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Blob(t.Context(), "library/x", digest.FromString("x")); !errors.Is(err, errForbiddenAddress) {
		t.Fatalf("redirect to a metadata address: %v", err)
	}
}
