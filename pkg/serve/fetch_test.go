package serve

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeResolver answers from a table: what a name resolves to, whatever DNS
// says (a name of the caller's that resolves to a private address).
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestSourcesDialer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hop" {
			http.Redirect(w, r, "http://rebind.test:"+strings.Split(r.Host, ":")[1]+"/x", http.StatusFound)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	port := strings.Split(srv.Listener.Addr().String(), ":")[1]
	res := fakeResolver{
		"private.test":  {"10.0.0.7"},
		"mixed.test":    {"93.184.216.34", "127.0.0.1"},
		"meta.test":     {"169.254.169.254"},
		"v6.test":       {"::1"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"cgnat.test":    {"100.64.1.1"},
		"internal.test": {"127.0.0.1"},
		"rebind.test":   {"127.0.0.1"},
	}
	s := &Sources{Resolver: res, Allow: []string{"http://internal.test:" + port + "/"}}
	c := s.Client()
	for host, want := range map[string]string{
		"private.test": "a private address", "mixed.test": "a loopback address", "meta.test": "link-local",
		"v6.test": "a loopback address", "mapped.test": "it resolves to 127.0.0.1, a loopback", "cgnat.test": "carrier-grade NAT",
	} {
		_, err := c.Get("http://" + host + ":" + port + "/x")
		var fe *ForbiddenError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", host, err, want)
		}
	}
	// The allowed host:port is dialed; its redirect to another name that
	// resolves to the same loopback address is not.
	resp, err := c.Get("http://internal.test:" + port + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := c.Get("http://internal.test:" + port + "/hop"); err == nil || !strings.Contains(err.Error(), "rebind.test: it resolves to 127.0.0.1") {
		t.Errorf("redirect: %v", err)
	}
	// The environment's proxy is never used: it would dial for us.
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	if _, err := s.Client().Get("http://private.test:" + port + "/x"); err == nil || !strings.Contains(err.Error(), "a private address") {
		t.Errorf("with HTTP_PROXY: %v", err)
	}
}

func TestSourcesCheckURL(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "p.ndjson"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), nil, 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(dir, "data", "link"))
	s := &Sources{Allow: []string{"file://" + dir + "/data/", "s3://ok/", "http://10.0.0.5:9000/public/"}}
	for raw, ok := range map[string]bool{
		"https://example.org/x.ndjson":      true,
		"http://u:p@example.org/x":          true, // user info is the caller's own; the dialer checks the host
		"file://" + dir + "/data/p.ndjson":  true,
		"file://" + dir + "/data/../secret": false,
		"file://" + dir + "/data/link":      false,
		"file:///etc/passwd":                false,
		"/etc/passwd":                       false,
		"s3://ok/x.ndjson":                  true,
		"s3://other/x.ndjson":               false,
		"gs://b/x":                          false,
		"ftp://example.org/x":               false,
		"http:///nohost":                    false,
	} {
		if err := s.CheckURL(raw); (err == nil) != ok {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

func TestForbiddenAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"8.8.8.8": "", "2606:4700::1111": "",
		"64:ff9b::a00:1":     "a private address (carried in 64:ff9b::a00:1)",
		"64:ff9b::7f00:1":    "a loopback address",
		"2002:a9fe:a9fe::1":  "link-local",
		"::10.0.0.1":         "a private address",
		"198.18.0.1":         "a reserved address",
		"240.0.0.1":          "a reserved address",
		"255.255.255.255":    "a reserved address",
		"192.0.0.8":          "a reserved address",
		"fec0::1":            "a reserved address",
		"0.1.2.3":            "a this-network address",
		"::ffff:169.254.1.1": "link-local",
	} {
		got := forbiddenAddr(netip.MustParseAddr(addr))
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}
