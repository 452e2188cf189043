package upstream

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/netip"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// newAuthClient is oras-go's auth client over rt, sending ua with every
// request.
func (r *Registry) newAuthClient(rt http.RoundTripper, ua string) *auth.Client {
	if ua == "" {
		ua = DefaultUserAgent
	}
	return &auth.Client{
		Client: &http.Client{Transport: rt, CheckRedirect: r.checkRedirect},
		Header: http.Header{"User-Agent": {ua}},
		Cache:  auth.NewCache(),
		// The transport's address policy is the one rule for realms as for
		// every other request; oras-go's own realm denylist would refuse
		// loopback realms that AllowNetworks lists, and lets private ones
		// through.
		BlockedRealmPrefixes: []netip.Prefix{},
	}
}

// useCredentials gives cfg's credentials, if any, to the configured
// registry's host alone, and remembers them as secrets to scrub from
// messages.
func (r *Registry) useCredentials(cfg Config) {
	if cfg.Username == "" && cfg.Password == "" && cfg.Token == "" {
		return
	}
	cred := auth.Credential{Username: cfg.Username, Password: cfg.Password, RefreshToken: cfg.Token}
	host := r.base.Host
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
