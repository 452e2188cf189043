package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

const secret = "internal-secret-7f3a9c"

// secretService stands for a service on pullgate's own host or network
// (Redis, an admin port, a metadata endpoint) that a hostile upstream would
// like pullgate to read for it. It counts the connections it accepts.
type secretService struct {
	*httptest.Server
	accepted atomic.Int32
}

func newSecretService(t *testing.T) *secretService {
	t.Helper()
	s := &secretService{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/token") {
			fmt.Fprintf(w, `{"token":%q}`, secret)
			return
		}
		io.WriteString(w, secret)
	}))
	s.Listener = &countingListener{Listener: s.Listener, n: &s.accepted}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// hostile is an upstream whose every manifest and blob answer is produced
// by answer; /v2/ answers 200.
func hostile(t *testing.T, answer http.HandlerFunc) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return
		}
		answer(w, req)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func redirectTo(target string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, target, http.StatusTemporaryRedirect)
	}
}

func realmAt(realm string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="registry"`, realm))
		w.WriteHeader(http.StatusUnauthorized)
	}
}

// fetch asks r for a blob and a manifest by digest and returns the blob's
// bytes (if it got any) and the errors.
func fetch(r *Registry) (string, []error) {
	ctx := context.Background()
	var got string
	var errs []error
	rc, _, err := r.Blob(ctx, "library/x", digest.FromString("x"))
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		got = string(b)
	}
	errs = append(errs, err)
	_, _, err = r.Manifest(ctx, "library/x", digest.FromString(secret), nil)
	return got, append(errs, err)
}

// A hostile upstream cannot make pullgate connect to a loopback or private
// service by a redirect or a token realm, whether it names the service by
// address, by IPv4-mapped IPv6 address or by a name that resolves to it:
// the refusal comes before the connection, and neither the service's
// answer nor the upstream's text reaches the client's description.
func TestHostileUpstreamCannotReachInternalServices(t *testing.T) {
	svc := newSecretService(t)
	_, port, _ := net.SplitHostPort(svc.Listener.Addr().String())
	cases := map[string]http.HandlerFunc{
		"redirect to loopback":             redirectTo(svc.URL + "/internal"),
		"redirect to a name for loopback":  redirectTo("http://localhost:" + port + "/internal"),
		"redirect to IPv4-mapped loopback": redirectTo("http://[::ffff:127.0.0.1]:" + port + "/internal"),
		"realm on loopback":                realmAt(svc.URL + "/token"),
		"realm on a name for loopback":     realmAt("http://localhost:" + port + "/token"),
		"realm on IPv4-mapped loopback":    realmAt("http://[::ffff:127.0.0.1]:" + port + "/token"),
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := New(Config{Name: "docker.io", URL: hostile(t, answer), Retries: -1})
			if err != nil {
				t.Fatal(err)
			}
			got, errs := fetch(r)
			for _, err := range errs {
				if !errors.Is(err, errForbiddenAddress) {
					t.Errorf("err = %v, want a refusal to connect", err)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err %T is not an *Error", err)
				}
				if msg := e.Public(); strings.Contains(msg, secret) || strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, "non-public address") {
					t.Errorf("client description %q", msg)
				}
			}
			if got != "" {
				t.Errorf("blob body %q from an internal service", got)
			}
			if n := svc.accepted.Load(); n != 0 {
				t.Fatalf("the internal service accepted %d connections", n)
			}
		})
	}
}

// A realm or redirect to a private address literal is refused without
// resolving or dialling anything: 10.255.255.1 would hang if dialled.
func TestPrivateRealmAndRedirectRefusedBeforeDialling(t *testing.T) {
	for name, answer := range map[string]http.HandlerFunc{
		"realm":    realmAt("https://10.255.255.1/token"),
		"redirect": redirectTo("http://192.168.0.1/blob"),
		"cgnat":    redirectTo("http://100.64.0.1/blob"),
		"ula":      redirectTo("http://[fd00::1]/blob"),
	} {
		t.Run(name, func(t *testing.T) {
			r, err := New(Config{Name: "docker.io", URL: hostile(t, answer), Retries: -1, Timeout: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, _, err = r.Blob(ctx, "library/x", digest.FromString("x"))
			if !errors.Is(err, errForbiddenAddress) {
				t.Fatalf("err = %v, want a refusal before dialling", err)
			}
		})
	}
}

// With the internal service's network in AllowNetworks (an upstream whose
// CDN and token service are on a private network), the same answers are
// followed.
func TestAllowNetworksFollowsInternalAddresses(t *testing.T) {
	svc := newSecretService(t)
	_, port, _ := net.SplitHostPort(svc.Listener.Addr().String())
	for name, c := range map[string]struct {
		answer http.HandlerFunc
		allow  string
	}{
		"redirect":                 {redirectTo(svc.URL + "/cdn"), "127.0.0.1/32"},
		"redirect, mapped address": {redirectTo("http://[::ffff:127.0.0.1]:" + port + "/cdn"), "127.0.0.0/8"},
		"redirect, mapped prefix":  {redirectTo(svc.URL + "/cdn"), "::ffff:127.0.0.0/104"},
		"realm":                    {realmAt(svc.URL + "/token"), "127.0.0.1/32"},
	} {
		t.Run(name, func(t *testing.T) {
			before := svc.accepted.Load()
			r, err := New(Config{Name: "docker.io", URL: hostile(t, c.answer), Retries: -1,
				AllowNetworks: []netip.Prefix{netip.MustParsePrefix(c.allow)}})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = r.Blob(context.Background(), "library/x", digest.FromString("x"))
			if errors.Is(err, errForbiddenAddress) {
				t.Fatalf("refused although allowed: %v", err)
			}
			if svc.accepted.Load() == before {
				t.Fatal("the allowed service was never contacted")
			}
		})
	}
}

// The configured upstream's own host:port is the operator's choice and is
// reached wherever it is, redirects to itself included. (Another port on
// the same host is not: see TestHostileUpstreamCannotReachInternalServices.)
func TestConfiguredUpstreamIsReachedWhereverItIs(t *testing.T) {
	svc := newSecretService(t)
	var reached atomic.Int32
	up := hostile(t, func(w http.ResponseWriter, req *http.Request) {
		reached.Add(1)
		if strings.Contains(req.URL.Path, "/blobs/") {
			http.Redirect(w, req, "/v2/library/x/cdn", http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, "same origin")
	})
	r, err := New(Config{Name: "docker.io", URL: up, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := r.Blob(context.Background(), "library/x", digest.FromString("x"))
	if err != nil {
		t.Fatalf("blob from the configured loopback upstream (same-origin redirect): %v", err)
	}
	rc.Close()
	if reached.Load() != 2 {
		t.Fatalf("upstream reached %d times, want 2 (blob, then its redirect)", reached.Load())
	}

	// The internal service itself, configured as the upstream, is reached.
	r, err = New(Config{Name: "docker.io", URL: svc.URL, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Tags(context.Background(), "library/x", 0, ""); err != nil {
		t.Fatalf("configured upstream on loopback: %v", err)
	}
}

// Upstream's error body goes to pullgate's log (capped, tokens blanked),
// never into the client's description.
func TestErrorBodyNeverInPublicDescription(t *testing.T) {
	const token = "eyJhbGciOiJFUzI1NiJ9.payload.sig"
	body := secret + " /var/lib/registry/data Authorization: Bearer " + token + " " + strings.Repeat("x", 300)
	cases := map[string]http.HandlerFunc{
		"500 text": func(w http.ResponseWriter, req *http.Request) {
			http.Error(w, body, http.StatusInternalServerError)
		},
		"403 OCI body with a made-up code": func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, secret, body)
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := New(Config{Name: "docker.io", URL: hostile(t, answer), Retries: -1})
			if err != nil {
				t.Fatal(err)
			}
			_, errs := fetch(r)
			for _, err := range errs {
				var e *Error
				if !errors.As(err, &e) || e.StatusCode == 0 {
					t.Fatalf("err = %v, want a status error", err)
				}
				pub := e.Public()
				if strings.Contains(pub, secret) || strings.Contains(pub, "/var/lib") || strings.Contains(pub, token) {
					t.Errorf("client description carries the body: %q", pub)
				}
				if !strings.Contains(pub, fmt.Sprintf("upstream answered %d", e.StatusCode)) {
					t.Errorf("client description %q lacks the status", pub)
				}
				if strings.Contains(err.Error(), token) {
					t.Errorf("log text carries a bearer token: %q", err)
				}
				if len(e.Message) > 210 {
					t.Errorf("logged body is %d bytes, want it capped", len(e.Message))
				}
			}
		})
	}
}

func TestAddressPolicy(t *testing.T) {
	p := newAddressPolicy([]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("169.254.0.0/16")}, mustURL(t, "https://registry.example"))
	cases := []struct {
		addr    string
		trusted bool
		ok      bool
	}{
		{"93.184.216.34", false, true},
		{"2606:2800:220:1:248:1893:25c8:1946", false, true},
		{"64:ff9b::5db8:d822", false, true}, // NAT64 of a public address
		{"127.0.0.1", false, false},
		{"127.1.2.3", false, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, false},
		{"::ffff:10.0.0.1", false, false},
		{"64:ff9b::7f00:1", false, false}, // NAT64 of 127.0.0.1
		{"2002:7f00:1::1", false, false},  // 6to4 of 127.0.0.1
		{"10.0.0.1", false, false},
		{"172.16.5.4", false, false},
		{"192.168.1.1", false, false},
		{"100.64.0.1", false, false},
		{"fd12::1", false, false},
		{"198.18.0.1", false, false},
		{"240.0.0.1", false, false},
		{"2001::1", false, false}, // Teredo
		{"::127.0.0.1", false, false},
		{"10.1.2.3", false, true}, // in AllowNetworks
		{"::ffff:10.1.2.3", false, true},
		{"127.0.0.1", true, true},   // the configured upstream's own address
		{"192.168.1.1", true, true}, // likewise
		// Never, whoever asks.
		{"169.254.169.254", true, false}, // even though listed
		{"fe80::1", true, false},
		{"0.0.0.0", true, false},
		{"0.1.2.3", true, false},
		{"::", true, false},
		{"224.0.0.1", true, false},
		{"ff02::1", true, false},
		{"255.255.255.255", true, false},
	}
	for _, c := range cases {
		err := p.check(netip.MustParseAddr(c.addr), c.trusted)
		if (err == nil) != c.ok {
			t.Errorf("check(%s, trusted=%v) = %v, want ok=%v", c.addr, c.trusted, err, c.ok)
		}
		if err != nil && !errors.Is(err, errForbiddenAddress) {
			t.Errorf("check(%s): %v is not errForbiddenAddress", c.addr, err)
		}
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
