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
)

var (
	// ErrForbiddenAddress means a redirect or token realm led to an address
	// this mirror does not connect to on an upstream's behalf (loopback,
	// link-local, private, …) when the upstream itself is not at one.
	ErrForbiddenAddress = errors.New("forbidden address")
	// ErrRedirect means the upstream answered with a redirect this mirror
	// does not follow: not a blob, too many hops, or a downgrade to http.
	ErrRedirect = errors.New("redirect refused")
)

// maxRedirects is how many hops a blob GET may take; a registry sends one
// (to its CDN), a CDN sometimes one more.
const maxRedirects = 3

// addrClass is the kind of network an address belongs to, for deciding
// whether the mirror may connect to it on an upstream's say-so.
type addrClass uint8

const (
	classPublic addrClass = iota
	classLoopback
	classLinkLocal // includes cloud metadata, 169.254.169.254
	classPrivate   // RFC 1918, RFC 4193, shared address space (RFC 6598)
	classUnspecified
	classMulticast
)

var classNames = [...]string{"public", "loopback", "link-local", "private", "unspecified", "multicast"}

func (c addrClass) String() string { return classNames[c] }

var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// classify names the class of ip. IPv4-mapped IPv6 addresses are judged as
// the IPv4 address they carry, so [::ffff:10.0.0.1] is private.
func classify(ip netip.Addr) addrClass {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return classLoopback
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return classLinkLocal
	case ip.IsUnspecified(), ip.Is4() && thisNetwork.Contains(ip):
		return classUnspecified
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return classMulticast
	case ip.IsPrivate(), ip.Is4() && sharedAddressSpace.Contains(ip):
		return classPrivate
	}
	return classPublic
}

// hostClass is the class of a configured host name: an IP literal's own,
// loopback for localhost, public for any other name (its DNS answer is not
// trusted to widen what redirects may reach).
func hostClass(host string) addrClass {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return classify(ip)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return classLoopback
	}
	return classPublic
}

// allowedTarget is the address rule for every connection an upstream makes
// us open somewhere else (redirects, token realms): public addresses, or
// addresses of the upstream's own class (an upstream on loopback may send us
// to loopback, never to link-local or private).
func allowedTarget(upstream addrClass, target netip.Addr) bool {
	c := classify(target)
	return c == classPublic || c == upstream
}

// guard applies the address rule at dial time, to the IP actually being
// connected, so a name that resolves to a forbidden address (or changes its
// answer between a check and the dial) cannot slip through. Connections to
// the configured upstream itself, and to an HTTP proxy from the environment,
// are the operator's choice and are not checked.
type guard struct {
	upstream     string    // canonical host:port of the configured URL
	upstreamHost string    // its host name, lower case
	class        addrClass // class of the configured host
	direct       *net.Dialer
	checked      *net.Dialer
	proxyFor     func(*http.Request) (*url.URL, error) // http.ProxyFromEnvironment

	mu      sync.Mutex
	proxies map[string]bool // host:port of proxies the environment named
}

func newGuard(base *url.URL, dialer net.Dialer) *guard {
	g := &guard{
		upstream:     canonicalAddr(base),
		upstreamHost: strings.ToLower(base.Hostname()),
		class:        hostClass(base.Hostname()),
		direct:       &dialer,
		proxyFor:     http.ProxyFromEnvironment,
		proxies:      map[string]bool{},
	}
	checked := dialer
	checked.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot parse dial address %q", ErrForbiddenAddress, address)
		}
		if !allowedTarget(g.class, ap.Addr()) {
			return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, ap.Addr(), classify(ap.Addr()))
		}
		return nil
	}
	g.checked = &checked
	return g
}

// canonicalAddr is host:port as the transport dials it.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			port = "80"
		case "socks5", "socks5h": // proxy URLs
			port = "1080"
		default:
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func (g *guard) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.exempt(addr) {
		return g.direct.DialContext(ctx, network, addr)
	}
	return g.checked.DialContext(ctx, network, addr)
}

func (g *guard) exempt(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	addr = net.JoinHostPort(strings.ToLower(host), port)
	if addr == g.upstream {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proxies[addr]
}

// maxProxies bounds the proxies remembered; the environment names one or two.
const maxProxies = 16

// proxy is the transport's Proxy function: the environment's proxy, which is
// exempt from the dial check. The target behind it is checked here only as
// far as it can be without a DNS answer (IP literals, localhost names): the
// proxy resolves names, often where we cannot, and its own egress policy
// applies.
func (g *guard) proxy(req *http.Request) (*url.URL, error) {
	pu, err := g.proxyFor(req)
	if err != nil || pu == nil {
		return pu, err
	}
	if canonicalAddr(req.URL) != g.upstream {
		if err := g.checkLiteral(req.URL.Hostname()); err != nil {
			return nil, err
		}
	}
	g.mu.Lock()
	if len(g.proxies) < maxProxies {
		g.proxies[canonicalAddr(pu)] = true
	}
	g.mu.Unlock()
	return pu, nil
}

// checkLiteral refuses, before any connection, a host that is an IP
// literal of a forbidden class, or a localhost name for an upstream that is
// not on loopback. Other names are checked at dial time.
func (g *guard) checkLiteral(host string) error {
	host = strings.Trim(strings.ToLower(host), "[]")
	if host == g.upstreamHost {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !allowedTarget(g.class, ip) {
			return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, ip, classify(ip))
		}
		return nil
	}
	if c := hostClass(host); c != classPublic && c != g.class {
		return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, host, c)
	}
	return nil
}

// redirectsAllowed marks a request context whose redirects may be followed.
type redirectsAllowed struct{}

func withRedirects(ctx context.Context) context.Context {
	return context.WithValue(ctx, redirectsAllowed{}, true)
}

func withoutRedirects(ctx context.Context) context.Context {
	return context.WithValue(ctx, redirectsAllowed{}, nil)
}

// origin is scheme://host:port, the unit credentials are bound to.
func origin(u *url.URL) string { return u.Scheme + "://" + canonicalAddr(u) }

// checkRedirect is the http.Client's redirect policy. Only requests marked
// withRedirects (blob fetches, which registries send to a CDN) follow, at
// most maxRedirects hops, never from https to http, never to an address the
// guard forbids, and the Authorization header never leaves its origin
// (net/http would keep it for the same host on another port, or a subdomain).
func (g *guard) checkRedirect(name string, allowHTTP bool) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0]
		if allowed, _ := req.Context().Value(redirectsAllowed{}).(bool); !allowed {
			return fmt.Errorf("upstream %s: %w: %s %s answered with a redirect (followed for blobs only)", name, ErrRedirect, first.Method, first.URL.Path)
		}
		if len(via) > maxRedirects {
			return fmt.Errorf("upstream %s: %w: more than %d redirects for %s", name, ErrRedirect, maxRedirects, first.URL.Path)
		}
		switch {
		case req.URL.Scheme == "https":
		case req.URL.Scheme == "http" && allowHTTP:
		default:
			return fmt.Errorf("upstream %s: %w: redirect of %s to scheme %q (https required)", name, ErrRedirect, first.URL.Path, req.URL.Scheme)
		}
		if err := g.checkLiteral(req.URL.Hostname()); err != nil {
			return fmt.Errorf("upstream %s: redirect of %s: %w", name, first.URL.Path, err)
		}
		if origin(req.URL) != origin(first.URL) {
			req.Header.Del("Authorization")
		}
		return nil
	}
}
