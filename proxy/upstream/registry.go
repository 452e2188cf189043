package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

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
	base, err := baseURL(cfg)
	if err != nil {
		return nil, err
	}
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
	r.applyLimits(cfg)
	policy := newAddressPolicy(cfg.AllowNetworks, base)
	r.client = r.newAuthClient(roundTripper(cfg, policy), cfg.UserAgent)
	r.useCredentials(cfg)
	return r, nil
}

// baseURL is the URL requests to cfg's registry start from: the configured
// one, or the one its Name implies. It refuses what New must not dial.
func baseURL(cfg Config) (*url.URL, error) {
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
	return base, nil
}

// applyLimits sets the header timeout, retries, connection slots and idle
// timeout from cfg, with the defaults New documents for zero values.
func (r *Registry) applyLimits(cfg Config) {
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
}

// Name returns the registry name as clients say it ("docker.io").
func (r *Registry) Name() string { return r.name }

// URL returns the base URL requests are sent to.
func (r *Registry) URL() string { return r.base.String() }
