package bulkclient

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Auth adds credentials to a request: a SMART access token, a static
// bearer token, basic auth. Transport decides which requests get them.
type Auth interface {
	// Authorize sets req's credentials (its Authorization header).
	Authorize(ctx context.Context, req *http.Request) error
	// Refused is told that the server answered 401 to req, authorized by
	// Authorize; it reports whether one more try with fresh credentials
	// is worth it (a SMART token that the server no longer takes).
	Refused(req *http.Request) bool
}

// Tokens is where SMART access tokens come from (smart.TokenSource).
type Tokens interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// Bearer sends the access tokens of src, and after a 401 one more try
// with a new one.
func Bearer(src Tokens) Auth { return tokenAuth{src} }

type tokenAuth struct{ src Tokens }

func (a tokenAuth) Authorize(ctx context.Context, req *http.Request) error {
	tok, err := a.src.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (a tokenAuth) Refused(req *http.Request) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if ok {
		a.src.Invalidate(tok)
	}
	return ok
}

// StaticToken sends one bearer token (--bearer-token-file): a 401 is final.
func StaticToken(token string) Auth { return staticAuth{"Bearer " + token} }

// Basic sends user and password as HTTP basic auth: a 401 is final.
func Basic(user, password string) Auth {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, password)
	return staticAuth{r.Header.Get("Authorization")}
}

type staticAuth struct{ header string }

func (a staticAuth) Authorize(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", a.header)
	return nil
}

func (staticAuth) Refused(*http.Request) bool { return false }

// String keeps the secret out of any %v.
func (staticAuth) String() string   { return "static credentials" }
func (staticAuth) GoString() string { return "bulkclient.staticAuth{…}" }

// Transport is an http.RoundTripper that sends Auth's credentials to the
// origins it trusts (scheme, host and port) and to no other. A redirect
// is another request to it: one whose chain of redirects passed through
// another origin than its own goes without credentials, so a file that
// the server redirects to a pre-signed store URL (Oracle Health does, to
// S3) never gets the token, even when the redirect comes back. A 401 to
// an authorized request is told to Auth, and tried once more if it says
// so.
type Transport struct {
	Base http.RoundTripper // default http.DefaultTransport
	Auth Auth              // nil: no credentials at all

	mu      sync.Mutex
	trusted map[string]bool
}

// Trust adds the origin of rawURL to those that get credentials.
func (t *Transport) Trust(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.trusted == nil {
		t.trusted = map[string]bool{}
	}
	t.trusted[origin(u)] = true
}

// origin is scheme://host:port of u, the port made explicit.
func origin(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	scheme := strings.ToLower(u.Scheme)
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port
}

// Trusts reports whether req (with the redirects that led to it) may carry
// credentials.
func (t *Transport) Trusts(req *http.Request) bool {
	o := origin(req.URL)
	t.mu.Lock()
	ok := t.trusted[o]
	t.mu.Unlock()
	for r := req.Response; ok && r != nil && r.Request != nil; r = r.Request.Response {
		ok = origin(r.Request.URL) == o
	}
	return ok
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip sends req, with credentials where they belong.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Auth == nil || !t.Trusts(req) {
		if req.Header.Get("Authorization") != "" {
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
		}
		return t.base().RoundTrip(req)
	}
	r := req.Clone(req.Context())
	if err := t.Auth.Authorize(req.Context(), r); err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base().RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !t.Auth.Refused(r) {
		return resp, err
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // its body is spent: the 401 is the answer
	}
	r = req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		r.Body = body
	}
	if err := t.Auth.Authorize(req.Context(), r); err != nil {
		closeBody(r)
		return resp, nil // the 401 says it better than a failed renewal
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return t.base().RoundTrip(r)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
