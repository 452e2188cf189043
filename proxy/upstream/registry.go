package upstream

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Defaults applied by New when the Config leaves a field empty.
const (
	DockerHubName    = "docker.io"
	DockerHubURL     = "https://registry-1.docker.io"
	DefaultUserAgent = "pullgate"
	DefaultTimeout   = 30 * time.Second
	DefaultRetries   = 2
	// DefaultMaxConcurrent caps the requests open at once to one registry
	// (see Config.MaxConcurrent).
	DefaultMaxConcurrent = 32

	// MaxManifestSize caps a manifest body, as distribution and containerd do.
	MaxManifestSize = 4 << 20
	// maxTagsSize caps a tag list page.
	maxTagsSize = 16 << 20
	// maxRedirects caps a redirect chain (registry → CDN → signed URL …).
	maxRedirects = 5
)

// Config describes one upstream registry.
type Config struct {
	// Name is the registry name as clients say it: "docker.io", "ghcr.io".
	// Defaults to the host of URL.
	Name string
	// URL is the base URL, e.g. "https://registry-1.docker.io" (the default
	// for docker.io; "https://<Name>" otherwise) or "http://127.0.0.1:5001".
	// Plain http is accepted only for loopback hosts unless Insecure.
	URL string
	// Username and Password are optional credentials. They are sent only to
	// the registry's own host and the token realm it names, and never appear
	// in logs or errors.
	Username string
	Password string
	// Token is an identity (refresh) token, sent to the registry's token
	// service instead of a password, as `docker login` stores it in
	// "identitytoken". Same care as Password.
	Token string
	// MaxConcurrent caps the requests open at once to this registry, a blob
	// download counting until its body is closed. Requests past the cap wait
	// in line (as long as their context allows) rather than fail, so that
	// clients do not give up on pullgate and fall back around it. Zero means
	// DefaultMaxConcurrent; negative means no cap.
	MaxConcurrent int
	// Insecure allows plain http to any host and skips TLS verification.
	Insecure bool
	// AllowNetworks lists the non-public networks (loopback, private, CGNAT
	// …) that redirects, token realms and DNS answers may lead to, for an
	// upstream that itself lives on a private network with its CDN or token
	// service. Empty: only public addresses, plus the configured URL's own
	// host:port. Link-local, multicast and unspecified addresses are
	// refused even if listed. See addressPolicy.
	AllowNetworks []netip.Prefix
	// UserAgent is sent with every request; defaults to DefaultUserAgent.
	UserAgent string
	// Timeout bounds the wait for response headers of one request (token
	// fetches and redirects included); bodies are streamed without a total
	// timeout. Defaults to DefaultTimeout; negative disables it.
	Timeout time.Duration
	// SlotWait bounds the wait for a connection slot when MaxConcurrent
	// requests are open; past it the request fails with ErrBusy. Defaults
	// to DefaultSlotWait; negative waits as long as the context allows.
	SlotWait time.Duration
	// IdleTimeout fails a blob body that sends no byte for this long (the
	// Read returns ErrIdle and the connection slot is freed). Defaults to
	// DefaultIdleTimeout; negative disables it.
	IdleTimeout time.Duration
	// Retries is how many times an idempotent request is retried after a
	// connection error, a header timeout or a 502/503/504. Zero means
	// DefaultRetries; negative disables retries. 429 is never retried here:
	// the caller decides.
	Retries int
	// Transport overrides the tuned transport (tests, custom CAs); Insecure
	// then only allows plain http, TLS settings are the caller's. An
	// *http.Transport is cloned and given pullgate's guarded dialer; any
	// other RoundTripper keeps its own dialer, and only address literals
	// are then checked.
	Transport http.RoundTripper
}

// Registry is a client for one upstream registry. It is safe for concurrent
// use.
type Registry struct {
	name     string
	base     *url.URL
	insecure bool
	timeout  time.Duration
	retries  int
	backoff  time.Duration // first retry delay; doubles per attempt
	client   *auth.Client
	secrets  []string
	slots    *slots // nil: no cap
	// idleTimeout fails a blob body silent for this long (0: never).
	idleTimeout time.Duration

	mu        sync.Mutex
	rateLimit RateLimit
}

// New validates cfg and returns a client for it.
func New(cfg Config) (*Registry, error) {
	raw := cfg.URL
	if raw == "" {
		switch {
		case cfg.Name == DockerHubName:
			raw = DockerHubURL
		case cfg.Name != "":
			raw = "https://" + cfg.Name
		default:
			return nil, errors.New("upstream: config needs a Name or a URL")
		}
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: parse URL: %w", cfg.Name, err)
	}
	switch {
	case base.Scheme != "http" && base.Scheme != "https":
		return nil, fmt.Errorf("upstream %s: URL scheme %q is not http or https", cfg.Name, base.Scheme)
	case base.Host == "":
		return nil, fmt.Errorf("upstream %s: URL has no host", cfg.Name)
	case base.User != nil:
		return nil, fmt.Errorf("upstream %s: URL must not carry credentials; use Username and Password", cfg.Name)
	case base.RawQuery != "" || base.Fragment != "":
		return nil, fmt.Errorf("upstream %s: URL must not have a query or fragment", cfg.Name)
	case base.Scheme == "http" && !cfg.Insecure && !isLoopback(base.Hostname()):
		return nil, fmt.Errorf("upstream %s: plain http to non-loopback host %q needs Insecure", cfg.Name, base.Hostname())
	}
	base.Path = strings.TrimSuffix(base.Path, "/")

	r := &Registry{
		name:     cfg.Name,
		base:     base,
		insecure: cfg.Insecure,
		timeout:  cfg.Timeout,
		retries:  cfg.Retries,
		backoff:  250 * time.Millisecond,
	}
	if r.name == "" {
		r.name = base.Host
	}
	if r.timeout == 0 {
		r.timeout = DefaultTimeout
	}
	if r.retries == 0 {
		r.retries = DefaultRetries
	}
	slotWait := cfg.SlotWait
	if slotWait == 0 {
		slotWait = DefaultSlotWait
	}
	switch {
	case cfg.MaxConcurrent == 0:
		r.slots = newSlots(DefaultMaxConcurrent, max(slotWait, 0))
	case cfg.MaxConcurrent > 0:
		r.slots = newSlots(cfg.MaxConcurrent, max(slotWait, 0))
	}
	switch {
	case cfg.IdleTimeout == 0:
		r.idleTimeout = DefaultIdleTimeout
	case cfg.IdleTimeout > 0:
		r.idleTimeout = cfg.IdleTimeout
	}
	policy := newAddressPolicy(cfg.AllowNetworks, base)
	var rt http.RoundTripper
	switch t := cfg.Transport.(type) {
	case nil:
		var tlsConfig *tls.Config
		if cfg.Insecure {
			tlsConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // operator asked for Insecure
		}
		rt = newTransport(tlsConfig, policy)
	case *http.Transport:
		t = t.Clone()
		t.DialContext = policy.dialContext()
		t.DialTLSContext = nil
		rt = t
	default:
		rt = t
	}
	rt = guardedTransport{next: rt, policy: policy}
	ua := cfg.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	r.client = &auth.Client{
		Client: &http.Client{Transport: rt, CheckRedirect: r.checkRedirect},
		Header: http.Header{"User-Agent": {ua}},
		Cache:  auth.NewCache(),
		// The transport's address policy is the one rule for realms as for
		// every other request; oras-go's own realm denylist would refuse
		// loopback realms that AllowNetworks lists, and lets private ones
		// through.
		BlockedRealmPrefixes: []netip.Prefix{},
	}
	if cfg.Username != "" || cfg.Password != "" || cfg.Token != "" {
		cred := auth.Credential{Username: cfg.Username, Password: cfg.Password, RefreshToken: cfg.Token}
		host := base.Host
		// oras-go resolves credentials per host:port of the request; only
		// the configured registry's host gets them (and then its realm).
		r.client.Credential = func(_ context.Context, hostport string) (auth.Credential, error) {
			if hostport == host {
				return cred, nil
			}
			return auth.EmptyCredential, nil
		}
		if cfg.Password != "" {
			r.secrets = append(r.secrets, cfg.Password,
				base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password)))
		}
		if cfg.Token != "" {
			r.secrets = append(r.secrets, cfg.Token)
		}
		// Short user names would mangle unrelated words in messages.
		if len(cfg.Username) >= 4 {
			r.secrets = append(r.secrets, cfg.Username)
		}
	}
	return r, nil
}

// Name returns the registry name as clients say it ("docker.io").
func (r *Registry) Name() string { return r.name }

// URL returns the base URL requests are sent to.
func (r *Registry) URL() string { return r.base.String() }

// checkRedirect runs on every redirect hop after oras-go has stripped the
// Authorization header from hops that leave the registry's origin.
func (r *Registry) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.Response != nil {
		r.observe(req.Response)
	}
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: stopped after %d redirects", errRedirectRefused, maxRedirects)
	}
	prev := via[len(via)-1].URL
	switch {
	case req.URL.Scheme != "http" && req.URL.Scheme != "https":
		return fmt.Errorf("%w: redirect to unsupported scheme %q", errRedirectRefused, req.URL.Scheme)
	case prev.Scheme == "https" && req.URL.Scheme == "http" && !r.insecure:
		return fmt.Errorf("%w: from https to http host %q", errRedirectRefused, req.URL.Host)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

// newTransport is a tuned transport for one registry, dialling only what
// policy allows. Each registry has its own, so that a connection one
// registry's AllowNetworks let through is never reused by another's request.
func newTransport(tlsConfig *tls.Config, policy *addressPolicy) *http.Transport {
	return &http.Transport{
		Proxy:                 policy.proxy,
		DialContext:           policy.dialContext(),
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// request is one registry API call, described well enough to build its URL
// and to report an error about it.
type request struct {
	method string
	repo   string
	kind   string // "manifest", "blob", "tags"
	ref    string // tag or digest; empty for tags
	path   string // below /v2/<repo>/
	query  url.Values
	accept []string
}

var errHeaderTimeout = errors.New("timed out waiting for response headers")

// send performs q with auth, retries and the header timeout. It returns the
// response only for a 2xx status; any other status becomes an *Error. The
// response body must be closed; closing it releases the request's context.
func (r *Registry) send(ctx context.Context, q request) (*http.Response, error) {
	if err := (registry.Reference{Registry: r.base.Host, Repository: q.repo}).ValidateRepository(); err != nil {
		return nil, r.errorFor(q, 0, fmt.Errorf("%w: %w", errInvalidReference, err))
	}
	u := *r.base
	u.Path = r.base.Path + "/v2/" + q.repo + "/" + q.path
	u.RawQuery = q.query.Encode()
	ctx = auth.AppendRepositoryScope(ctx, registry.Reference{Registry: r.base.Host, Repository: q.repo}, auth.ActionPull)

	for attempt := 0; ; attempt++ {
		resp, err := r.try(ctx, q, u.String())
		retryAfter := time.Duration(0)
		switch {
		case err != nil:
			if ctx.Err() != nil || !transient(err) {
				return nil, err
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		default:
			e := r.responseError(q, resp)
			if !retryStatus(resp.StatusCode) {
				return nil, e
			}
			err, retryAfter = e, e.RetryAfter
		}
		if attempt >= r.retries {
			return nil, err
		}
		delay := r.backoff << attempt
		if retryAfter > 0 && retryAfter <= 5*time.Second {
			delay = retryAfter
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, r.errorFor(q, 0, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// try sends one attempt. The header timeout cancels the attempt's context
// if no response headers arrive in time; once they have, the context lives
// until the body is closed.
func (r *Registry) try(ctx context.Context, q request, u string) (*http.Response, error) {
	// Waiting for a slot is not waiting for headers: the header timeout
	// starts once the request can go.
	release, err := r.slots.acquire(ctx)
	if err != nil {
		return nil, r.errorFor(q, 0, fmt.Errorf("waiting for a connection slot: %w", err))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := func(cause error) {
		cancel(cause)
		release()
	}
	var timer *time.Timer
	if r.timeout > 0 {
		timer = time.AfterFunc(r.timeout, func() { cancel(errHeaderTimeout) })
	}
	req, err := http.NewRequestWithContext(ctx, q.method, u, nil)
	if err != nil {
		done(nil)
		return nil, r.errorFor(q, 0, err)
	}
	if len(q.accept) > 0 {
		req.Header.Set("Accept", strings.Join(q.accept, ", "))
	}
	resp, err := r.client.Do(req)
	if timer != nil && !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		done(nil)
		return nil, r.errorFor(q, 0, fmt.Errorf("%w after %s: %w", errHeaderTimeout, r.timeout, context.DeadlineExceeded))
	}
	if err != nil {
		done(nil)
		return nil, r.transportError(q, err)
	}
	r.observe(resp)
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, done: done}
	return resp, nil
}

func retryStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// transient reports whether a failed attempt is worth repeating: the
// connection failed or headers did not arrive, as opposed to an auth,
// validation or redirect-policy failure.
func transient(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 0 {
		return false
	}
	if errors.Is(e.Err, errForbiddenAddress) {
		return false // the same answer would lead to the same address
	}
	if errors.Is(e.Err, errHeaderTimeout) {
		return true
	}
	if errors.Is(e.Err, io.EOF) || errors.Is(e.Err, io.ErrUnexpectedEOF) {
		return true // connection closed before the response
	}
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(e.Err, &opErr) || (errors.As(e.Err, &netErr) && netErr.Timeout())
}

// cancelOnClose releases a request's context and its connection slot when
// its body is closed (once, however often Close is called).
type cancelOnClose struct {
	io.ReadCloser
	done func(error)
	once sync.Once
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { c.done(nil) })
	return err
}
