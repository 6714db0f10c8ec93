package destination

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenTarget: the URL or the address it resolves to is not a public
// internet address (loopback, private, link-local, metadata, ...).
var ErrForbiddenTarget = errors.New("target address is not allowed")

var forbidden = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
		"2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// PublicAddr reports whether ip is a public unicast address. IPv4-mapped
// IPv6 addresses are judged as the IPv4 address they carry.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range forbidden {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// ValidateURL checks a customer-supplied target at configuration time: https
// (http only when private targets are allowed, as in tests), no credentials,
// and a host that is not a literal forbidden address or an obviously
// internal name. The dialer checks the resolved address again at connect
// time, so DNS cannot be used to sneak past this.
func ValidateURL(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %v", ErrForbiddenTarget, raw, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	default:
		return nil, fmt.Errorf("%w: url %q: scheme must be https", ErrForbiddenTarget, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: url must not carry credentials", ErrForbiddenTarget)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: url %q has no host", ErrForbiddenTarget, raw)
	}
	if allowPrivate {
		return u, nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if ip, err := netip.ParseAddr(h); err == nil {
		if !PublicAddr(ip) {
			return nil, fmt.Errorf("%w: %s", ErrForbiddenTarget, ip)
		}
		return u, nil
	}
	if numericHost(h) {
		// 2130706433, 0x7f.1, 0177.0.0.1: resolvers that follow inet_aton
		// read these as addresses (loopback here).
		return nil, fmt.Errorf("%w: host %s is a numeric address in a non-standard form", ErrForbiddenTarget, h)
	}
	if h == "localhost" || !strings.Contains(h, ".") {
		return nil, fmt.Errorf("%w: host %s is not a public name", ErrForbiddenTarget, h)
	}
	for _, suf := range []string{".localhost", ".local", ".internal", ".svc", ".cluster.local", ".home.arpa"} {
		if strings.HasSuffix(h, suf) {
			return nil, fmt.Errorf("%w: host %s is internal", ErrForbiddenTarget, h)
		}
	}
	return u, nil
}

// numericHost reports a host whose every label is a decimal, octal or hex
// number.
func numericHost(h string) bool {
	for _, label := range strings.Split(h, ".") {
		digits := strings.TrimPrefix(label, "0x")
		if digits == "" && label != "0x" {
			return false
		}
		for _, c := range digits {
			if !(c >= '0' && c <= '9' || label != digits && c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// NewClient returns an HTTP client for customer endpoints: it never uses a
// proxy, never follows redirects, and (unless allowPrivate) refuses at
// connect time any address that is not public, whatever DNS answered: the
// check runs in the dialer's Control on the address being connected to,
// after resolution, so a name that resolved to a public address when the
// URL was checked and to a private one now (DNS rebinding) is refused.
func NewClient(timeout time.Duration, allowPrivate bool) *http.Client {
	return newClient(timeout, allowPrivate, nil)
}

// newClient is NewClient resolving names with r (nil: the system's).
func newClient(timeout time.Duration, allowPrivate bool, r *net.Resolver) *http.Client {
	d := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second, Resolver: r}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrForbiddenTarget, address, err)
			}
			if !PublicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrForbiddenTarget, ap.Addr())
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// dialRefused reports whether err came from the connect-time address check.
func dialRefused(err error) bool { return errors.Is(err, ErrForbiddenTarget) }
