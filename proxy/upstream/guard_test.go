package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"
)

func TestAllowedTarget(t *testing.T) {
	tests := []struct {
		upstream string // configured host
		target   string // address a redirect or realm leads to
		want     bool
	}{
		// An upstream on loopback (every test) may send us to loopback…
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.2", true},
		{"localhost", "::1", true},
		{"[::1]", "::ffff:127.0.0.1", true},
		// …but never to another forbidden class.
		{"127.0.0.1", "169.254.169.254", false}, // cloud metadata
		{"localhost", "::ffff:10.0.0.1", false}, // private behind an IPv4-mapped address
		{"127.0.0.1", "10.0.0.1", false},
		{"127.0.0.1", "192.168.1.1", false},
		{"127.0.0.1", "172.16.0.1", false},
		{"127.0.0.1", "100.64.0.1", false}, // shared address space
		{"127.0.0.1", "fe80::1", false},
		{"127.0.0.1", "fd00::1", false},
		{"127.0.0.1", "0.0.0.0", false},
		{"127.0.0.1", "0.1.2.3", false},
		{"127.0.0.1", "::", false},
		{"127.0.0.1", "224.0.0.1", false},
		{"127.0.0.1", "ff02::1", false},
		// A public upstream: public targets only.
		{"registry-1.docker.io", "104.16.0.1", true},
		{"registry-1.docker.io", "2606:4700::1", true},
		{"registry-1.docker.io", "127.0.0.1", false},
		{"registry-1.docker.io", "::1", false},
		{"registry-1.docker.io", "::ffff:127.0.0.1", false},
		{"registry-1.docker.io", "169.254.169.254", false},
		{"registry-1.docker.io", "10.1.2.3", false},
		// A name is public whatever it resolves to: its DNS does not widen the rule.
		{"registry.corp.example", "10.1.2.3", false},
		// An upstream configured on a private address may use its network.
		{"10.0.0.5", "10.1.2.3", true},
		{"10.0.0.5", "::ffff:192.168.0.1", true},
		{"10.0.0.5", "127.0.0.1", false},
		{"10.0.0.5", "169.254.169.254", false},
	}
	for _, tc := range tests {
		got := allowedTarget(hostClass(tc.upstream), netip.MustParseAddr(tc.target))
		if got != tc.want {
			t.Errorf("upstream %s → %s: allowed=%v, want %v", tc.upstream, tc.target, got, tc.want)
		}
	}
}

func TestCheckLiteralRefusesBeforeDialing(t *testing.T) {
	tests := []struct {
		upstream, host string
		ok             bool
	}{
		{"http://127.0.0.1:5000", "127.0.0.1", true},
		{"http://127.0.0.1:5000", "localhost", true},
		{"http://localhost:5000", "169.254.169.254", false},
		{"http://localhost:5000", "[::ffff:10.0.0.1]", false},
		{"http://127.0.0.1:5000", "cdn.example.com", true}, // a name: checked at dial time
		{"https://ghcr.io", "localhost", false},
		{"https://ghcr.io", "app.localhost", false},
		{"https://ghcr.io", "127.0.0.1", false},
		{"https://ghcr.io", "ghcr.io", true},
		{"https://10.0.0.5", "10.0.0.6", true},
	}
	for _, tc := range tests {
		base, _ := url.Parse(tc.upstream)
		g := newGuard(base, net.Dialer{})
		err := g.checkLiteral(tc.host)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrForbiddenAddress)) {
			t.Errorf("upstream %s, target %s: %v, want ok=%v", tc.upstream, tc.host, err, tc.ok)
		}
	}
}

// A public upstream whose redirect names a host that resolves to loopback
// is refused at dial time, before the connection is made (DNS rebinding
// cannot help: the check is on the address being connected).
func TestDialRefusesNameResolvingToForbiddenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	base, _ := url.Parse("https://registry.example.com")
	g := newGuard(base, net.Dialer{Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// localhost resolves (from /etc/hosts) to loopback; so would any name an
	// attacker points there.
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if conn, err := g.dialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port))); !errors.Is(err, ErrForbiddenAddress) {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("dial %s for a public upstream: %v, want ErrForbiddenAddress", host, err)
		}
	}
	// Prove no connection reached the listener: the first one it accepts is
	// this marker connection.
	marker, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	marker.Write([]byte("M"))
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(first, b); err != nil || b[0] != 'M' {
		t.Fatalf("the listener's first connection was not the marker (%q, %v): the guard connected", b, err)
	}

	// The upstream's own host is the operator's choice and is not checked.
	own, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(port))
	conn, err := newGuard(own, net.Dialer{Timeout: 5 * time.Second}).dialContext(ctx, "tcp", own.Host)
	if err != nil {
		t.Fatalf("dial the upstream itself: %v", err)
	}
	conn.Close()
}

// An HTTP proxy from the environment is the operator's choice: the dial
// check does not apply to it (it is often on a private address), while a
// proxied request to a forbidden IP literal is still refused.
func TestProxyFromEnvironmentIsExempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	proxyURL, _ := url.Parse("http://" + ln.Addr().String())
	base, _ := url.Parse("https://registry.example.com")
	g := newGuard(base, net.Dialer{Timeout: 5 * time.Second})
	g.proxyFor = func(*http.Request) (*url.URL, error) { return proxyURL, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if conn, err := g.dialContext(ctx, "tcp", ln.Addr().String()); !errors.Is(err, ErrForbiddenAddress) {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("before any proxied request, loopback dial: %v, want ErrForbiddenAddress", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://registry.example.com/v2/", nil)
	if got, err := g.proxy(req); err != nil || got != proxyURL {
		t.Fatalf("proxy for the upstream: %v, %v", got, err)
	}
	conn, err := g.dialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the environment's proxy: %v", err)
	}
	conn.Close()

	for _, target := range []string{"http://169.254.169.254/latest/meta-data", "http://[::ffff:10.0.0.1]/", "http://localhost:8080/"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if _, err := g.proxy(req); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("proxied request to %s: %v, want ErrForbiddenAddress", target, err)
		}
	}
}
