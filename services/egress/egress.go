// Package egress says where Keytrail may send a tenant's traffic: an API's
// upstream must not be an address inside the operator's network — loopback,
// link-local (cloud metadata among them), private, shared (CGNAT),
// multicast, unspecified — nor one of Keytrail's own listeners, unless the
// operator allows a range. Control nodes check an upstream when an API is
// created or changed (a literal address, or localhost); gateways check the
// address they actually dial, so a name that resolves to a denied address is
// refused too. It imports nothing of Keytrail's.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
)

// ErrDenied: an upstream address the policy does not allow.
var ErrDenied = errors.New("egress: upstream address not allowed")

// Policy is what addresses upstreams may have.
type Policy struct {
	// Allow are the ranges an operator allows although they are internal
	// (--allow-upstream), e.g. 10.20.0.0/16 for services on the same
	// network, or 127.0.0.0/8 for keytrail dev.
	Allow []netip.Prefix
	// own are Keytrail's own listeners (admin API, gateway, metrics, NATS):
	// never an upstream, whatever Allow says. Added as they are bound.
	mu  sync.RWMutex
	own []netip.AddrPort
}

// AddOwn adds Keytrail listeners (host:port) that are never upstreams.
func (p *Policy) AddOwn(addrs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			p.own = append(p.own, ap)
		}
	}
}

// ParsePrefixes parses a comma-separated list of CIDRs (an address alone is
// a range of one).
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("egress: %q is not an address or a CIDR", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("egress: %q is not a CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Loopback are the loopback ranges, which keytrail dev allows.
func Loopback() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

var (
	shared   = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT; Alibaba's metadata at 100.100.100.200
	nat64    = netip.MustParsePrefix("64:ff9b::/96")
	ipv4Only = netip.MustParsePrefix("::ffff:0:0/96")
	// reserved are special-purpose ranges no tenant service lives in: IETF
	// protocol assignments, benchmarking, documentation, "future use" and
	// broadcast, IPv4-compatible IPv6 (deprecated, ::a.b.c.d) and 6to4
	// (2002::/16, which embeds an IPv4 address).
	reserved = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("::/96"),
		netip.MustParsePrefix("2002::/16"), netip.MustParsePrefix("2001:db8::/32")}
)

// internal says why a is not a public address, "" when it is.
func internal(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "a link-local address (cloud metadata services live there)"
	case a.IsPrivate():
		return "a private address"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	case a.IsUnspecified():
		return "the unspecified address"
	case shared.Contains(a):
		return "a shared (CGNAT) address"
	case nat64.Contains(a), ipv4Only.Contains(a):
		return "a translated address"
	}
	for _, r := range reserved {
		if r.Contains(a) {
			return "a reserved or special-purpose address"
		}
	}
	return ""
}

// CheckAddr refuses an address an upstream may not have.
func (p *Policy) CheckAddr(ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	p.mu.RLock()
	for _, own := range p.own {
		if own.Port() == ap.Port() && (own.Addr().Unmap() == a || own.Addr().IsUnspecified()) {
			p.mu.RUnlock()
			return fmt.Errorf("%w: %s is one of Keytrail's own listeners", ErrDenied, ap)
		}
	}
	p.mu.RUnlock()
	why := internal(a)
	if why == "" {
		return nil
	}
	for _, r := range p.Allow {
		if r.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is %s; an operator may allow its range with --allow-upstream", ErrDenied, a, why)
}

// CheckURL refuses an upstream URL whose host is a denied literal address
// or localhost. Other names are checked when they are dialled.
func (p *Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL with a valid host", ErrDenied)
	}
	host, port := strings.TrimSuffix(u.Hostname(), "."), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		host = "127.0.0.1"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil // a name: checked at dial time
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(a.String(), port))
	if err != nil {
		return fmt.Errorf("%w: not a valid port", ErrDenied)
	}
	return p.CheckAddr(ap)
}

// Control is a net.Dialer Control function that refuses to connect to a
// denied address: the address actually dialled, after name resolution.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address", ErrDenied, address)
	}
	return p.CheckAddr(ap)
}
