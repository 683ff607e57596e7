package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// A server that fetches the URLs its callers name ($load, $import) must not
// become their way into what only the server can reach: its own loopback,
// the cloud's metadata service (169.254.169.254), private networks, its
// files, the operator's buckets. So, unless an operator's --allow-source
// prefix says otherwise:
//
//   - only http and https URLs are fetched (file:, s3:, gs:, azblob: need a
//     prefix allowing them);
//   - every address a name resolves to is checked, and the connection is
//     made to the address that was checked (a name that resolves to a
//     public address, then to 127.0.0.1, cannot slip through: DNS
//     rebinding);
//   - each redirect is checked as the first URL was, and each connection
//     it makes goes through the same dialer.

// Resolver looks names up (net.DefaultResolver; tests give their own).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Sources decides which URLs a caller may make the server fetch.
type Sources struct {
	Allow    []string // URL prefixes the operator allows whatever they name
	Resolver Resolver // nil: net.DefaultResolver
}

// ForbiddenError is a URL a caller may not make the server fetch.
type ForbiddenError struct{ URL, Reason string }

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s: %s (the server's --allow-source can allow it)", e.URL, e.Reason)
}

// Permanent tells pkg/source not to ask again.
func (e *ForbiddenError) Permanent() bool { return true }

// allowed reports whether raw starts with an --allow-source prefix.
func (s *Sources) allowed(raw string) bool {
	for _, p := range s.Allow {
		if strings.HasPrefix(raw, p) {
			return true
		}
	}
	return false
}

// CheckURL refuses a URL a caller may not name: another scheme than
// http(s) unless an --allow-source prefix allows it (a bucket URL never
// with parameters such as endpoint=, which would send the server's
// credentials to any host); an http(s) URL on the host:port of a prefix
// but outside its path. Addresses are checked when connecting (see
// Client).
func (s *Sources) CheckURL(raw string) error {
	if source.URLScheme(raw) == "file" {
		// A file's path is checked as it really is: no .. or link out of
		// an allowed folder.
		p, err := source.FilePath(raw)
		if err == nil {
			if real, err := filepath.EvalSymlinks(filepath.Clean(p)); err == nil && s.allowed("file://"+real) {
				return nil
			}
		}
		return &ForbiddenError{URL: source.Redact(raw), Reason: "files on the server are not read for a caller"}
	}
	shown := source.Redact(raw)
	u, err := url.Parse(raw)
	if err == nil && u.Scheme != "http" && u.Scheme != "https" && u.RawQuery != "" {
		return &ForbiddenError{URL: shown, Reason: "a bucket URL with parameters (endpoint=, region=) is not fetched for a caller"}
	}
	if s.allowed(raw) {
		return nil
	}
	switch {
	case err != nil || u.Host == "" && (u.Scheme == "http" || u.Scheme == "https"):
		return &ForbiddenError{URL: shown, Reason: "not an absolute http(s) URL"}
	case u.Scheme != "http" && u.Scheme != "https":
		what := u.Scheme + ": URLs"
		if u.Scheme == "" {
			what = "paths on the server"
		}
		return &ForbiddenError{URL: shown, Reason: what + " are not fetched for a caller"}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if s.allowedHostPort(net.JoinHostPort(u.Hostname(), port)) {
		return &ForbiddenError{URL: shown, Reason: "outside the --allow-source prefix of its host"}
	}
	return nil
}

// allowedHostPort reports whether an --allow-source prefix names the
// host:port hp (so that its private address may be dialed).
func (s *Sources) allowedHostPort(hp string) bool {
	for _, p := range s.Allow {
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			continue
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if net.JoinHostPort(u.Hostname(), port) == hp {
			return true
		}
	}
	return false
}

// reserved are ranges no caller's URL has business with besides those
// netip tells (RFC 6890 and friends).
var reserved = []netip.Prefix{
	netip.MustParsePrefix("192.0.0.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("fec0::/10"), netip.MustParsePrefix("100::/64"), netip.MustParsePrefix("2001:db8::/32"),
}

// embedded is the IPv4 address an IPv6 one carries to a gateway that
// reaches it (NAT64 64:ff9b::/96, 6to4 2002::/16, IPv4-compatible ::a.b.c.d).
func embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(a), netip.MustParsePrefix("64:ff9b:1::/48").Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case netip.MustParsePrefix("2002::/16").Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case netip.MustParsePrefix("::/96").Contains(a) && !a.IsLoopback() && !a.IsUnspecified():
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

// forbiddenAddr says why an address is not for callers ("" when it is).
func forbiddenAddr(a netip.Addr) string {
	a = a.Unmap()
	if v4, ok := embedded(a); ok {
		if why := forbiddenAddr(v4); why != "" {
			return why + " (carried in " + a.String() + ")"
		}
	}
	for _, p := range reserved {
		if p.Contains(a) {
			return "a reserved address"
		}
	}
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "a link-local address (the cloud's metadata service is one)"
	case a.IsPrivate():
		return "a private address"
	case a.IsUnspecified():
		return "an unspecified address"
	case a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return "a multicast address"
	case a.Is4() && a.As4()[0] == 100 && a.As4()[1]&0xc0 == 64:
		return "a shared (carrier-grade NAT) address"
	case a.Is4() && a.As4()[0] == 0:
		return "a this-network address"
	}
	return ""
}

// Client is the HTTP client of caller-named URLs: its dialer checks every
// address it connects to, its redirects are checked as URLs, and no proxy
// of the environment is used (it would dial for us, unchecked).
func (s *Sources) Client() *http.Client {
	resolver := s.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%s: no address", host)
		}
		open := s.allowedHostPort(addr)
		for _, a := range addrs {
			if why := forbiddenAddr(a); why != "" && !open {
				return nil, &ForbiddenError{URL: host, Reason: fmt.Sprintf("it resolves to %s, %s", a.Unmap(), why)}
			}
		}
		var last error
		for _, a := range addrs {
			c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return s.CheckURL(req.URL.String())
	}}
}
