package upstream

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// roundTripper is the transport for one registry: the tuned transport (or
// the caller's) dialling only what policy allows, wrapped so that every
// request's URL is checked against policy as well.
func roundTripper(cfg Config, policy *addressPolicy) http.RoundTripper {
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
	return guardedTransport{next: rt, policy: policy}
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
