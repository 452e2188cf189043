package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errForbiddenAddress refuses a connection to an address an upstream, its
// CDN or its token service has no business being at.
var errForbiddenAddress = errors.New("refusing to connect to a non-public address")

// addressPolicy decides which addresses one registry's client may connect
// to. An upstream answer (a redirect, a token realm) or a DNS answer must
// never make pullgate reach a service on its own host or network and hand
// the reply to an anonymous client. So:
//
//   - never: unspecified, "this network" (0.0.0.0/8), multicast, broadcast
//     and link-local addresses (cloud metadata lives at 169.254.169.254),
//     whoever asks;
//   - the operator's own choices: any other address in AllowNetworks, and
//     whatever address the configured upstream's host:port (exactly that
//     host and port) or a proxy from the environment resolves to;
//   - everything else only if it is public: loopback, private (RFC 1918,
//     fc00::/7), CGNAT (100.64.0.0/10) and the other special-purpose ranges
//     are refused.
//
// The check runs on the address actually dialled, before the connection is
// made, so DNS names (and rebinding) are covered; IPv4-mapped, NAT64 and
// 6to4 IPv6 addresses are judged by the IPv4 address inside them.
type addressPolicy struct {
	allow []netip.Prefix

	mu      sync.Mutex
	trusted map[string]bool // lower-cased host:port the operator named
}

func newAddressPolicy(allow []netip.Prefix, upstream *url.URL) *addressPolicy {
	p := &addressPolicy{trusted: map[string]bool{}}
	for _, n := range allow {
		if n.Addr().Is4In6() && n.Bits() >= 96 {
			n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
		}
		p.allow = append(p.allow, n.Masked())
	}
	p.trust(upstream)
	return p
}

// trust marks u's host:port as one the operator chose.
func (p *addressPolicy) trust(u *url.URL) {
	p.mu.Lock()
	p.trusted[dialAddress(u)] = true
	p.mu.Unlock()
}

func (p *addressPolicy) isTrusted(hostport string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.trusted[strings.ToLower(hostport)]
}

// dialAddress is the host:port net/http dials for u.
func dialAddress(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return strings.ToLower(net.JoinHostPort(u.Hostname(), port))
}

// check decides whether ip may be connected to; trusted says the dial is
// to the host:port the operator configured.
func (p *addressPolicy) check(ip netip.Addr, trusted bool) error {
	ip = embeddedIPv4(ip.WithZone("").Unmap())
	if what := never(ip); what != "" {
		return fmt.Errorf("%w: %s is %s", errForbiddenAddress, ip, what)
	}
	for _, n := range p.allow {
		if n.Contains(ip) {
			return nil
		}
	}
	if trusted {
		return nil
	}
	if what := nonPublic(ip); what != "" {
		return fmt.Errorf("%w: %s is %s, and not in the upstream's allow_networks", errForbiddenAddress, ip, what)
	}
	return nil
}

// checkURL refuses, before anything is resolved or dialled, a request
// whose host is an address literal that check refuses, so that a realm or
// redirect to one fails with a clear error even through a proxy. Names are
// judged on each address they resolve to, when it is dialled.
func (p *addressPolicy) checkURL(u *url.URL) error {
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil
	}
	return p.check(ip, p.isTrusted(dialAddress(u)))
}

type trustedDialKey struct{}

// dialContext dials through a net.Dialer whose ControlContext judges every
// address it is about to connect to (each of a name's A and AAAA records).
func (p *addressPolicy) dialContext() func(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		ControlContext: func(ctx context.Context, _, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q is not host:port", errForbiddenAddress, address)
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("%w: %q is not an IP address", errForbiddenAddress, host)
			}
			trusted, _ := ctx.Value(trustedDialKey{}).(bool)
			return p.check(ip, trusted)
		},
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if p.isTrusted(address) {
			ctx = context.WithValue(ctx, trustedDialKey{}, true)
		}
		return d.DialContext(ctx, network, address)
	}
}

// proxy is http.ProxyFromEnvironment, with the proxy it picks trusted: the
// operator chose it, and it, not pullgate, resolves the names behind it.
func (p *addressPolicy) proxy(req *http.Request) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(req)
	if u != nil && err == nil {
		p.trust(u)
	}
	return u, err
}

// guardedTransport refuses requests to forbidden address literals before
// handing them on: every request of a registry's client, redirects and
// token fetches included, passes through it.
type guardedTransport struct {
	next   http.RoundTripper
	policy *addressPolicy
}

func (g guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.policy.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return g.next.RoundTrip(req)
}

// embeddedIPv4 returns the IPv4 address a NAT64 (64:ff9b::/96) or 6to4
// (2002::/16) address reaches, and any other address unchanged.
func embeddedIPv4(ip netip.Addr) netip.Addr {
	if !ip.Is6() {
		return ip
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return ip
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	broadcast = netip.MustParseAddr("255.255.255.255")
	global6   = netip.MustParsePrefix("2000::/3")
)

// never names what ip is if no configuration may allow it.
func never(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified(), thisNet.Contains(ip):
		return "unspecified"
	case ip == broadcast:
		return "broadcast"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	}
	return ""
}

// specialPurpose lists the IANA special-purpose ranges that are not
// globally reachable (RFC 6890 and its updates).
var specialPurpose = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private)"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignment"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
}

// nonPublic names what ip is if it is not a public unicast address.
func nonPublic(ip netip.Addr) string {
	for _, s := range specialPurpose {
		if s.prefix.Contains(ip) {
			return s.what
		}
	}
	if ip.Is6() && !global6.Contains(ip) {
		return "not global unicast"
	}
	return ""
}
