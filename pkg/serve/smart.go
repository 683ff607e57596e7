package serve

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirbulk/fhirbulk/pkg/smart"
)

// SMART Backend Services, the server side: registered clients get short
// access tokens from POST /auth/token for a client assertion;
// .well-known/smart-configuration says where and how; the Bulk Data
// $export endpoints take these tokens (bulkAuthorized), no other.

// TokenLifetime is how long an access token lives; expiredKept how long
// one is known after it expired, to be told expired (not unknown).
const (
	TokenLifetime = 5 * time.Minute
	expiredKept   = time.Hour
)

// SMART holds the registered clients and the tokens issued to them.
type SMART struct {
	clients map[string]smart.Client

	verifier *smart.Verifier

	mu     sync.Mutex
	tokens map[string]issued
}

type issued struct {
	client string
	scope  string
	until  time.Time
}

// LoadClients reads a --smart-clients file: a JSON array of
// {"clientId", "jwks": {"keys": [...]} or "jwksUrl": "https://...", "scope"}.
func LoadClients(path string) (*SMART, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAuthFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxAuthFile {
		return nil, fmt.Errorf("%s: over %d MiB", path, maxAuthFile>>20)
	}
	var list []struct {
		ClientID string              `json:"clientId"`
		JWKS     *jose.JSONWebKeySet `json:"jwks"`
		JWKSURL  string              `json:"jwksUrl"`
		Scope    string              `json:"scope"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%s: not a JSON array of {clientId, jwks, scope}: %v", path, err)
	}
	s := &SMART{clients: map[string]smart.Client{}, tokens: map[string]issued{}}
	for i, c := range list {
		switch {
		case c.ClientID == "":
			return nil, fmt.Errorf("%s: client %d has no clientId", path, i)
		case c.Scope == "":
			return nil, fmt.Errorf("%s: client %q has no scope (as system/*.read)", path, c.ClientID)
		case c.JWKSURL != "" && c.JWKS != nil:
			return nil, fmt.Errorf("%s: client %q: give jwks or jwksUrl, not both", path, c.ClientID)
		case c.JWKSURL != "":
			if err := checkJWKSURL(c.JWKSURL); err != nil {
				return nil, fmt.Errorf("%s: client %q: jwksUrl %s", path, c.ClientID, err)
			}
		case c.JWKS == nil || len(c.JWKS.Keys) == 0:
			return nil, fmt.Errorf("%s: client %q has no jwks keys (or a jwksUrl)", path, c.ClientID)
		}
		var keys []jose.JSONWebKey
		if c.JWKS != nil {
			keys = c.JWKS.Keys
		}
		for _, k := range keys {
			if !k.IsPublic() {
				return nil, fmt.Errorf("%s: client %q: its jwks holds a private key: register the public key only", path, c.ClientID)
			}
		}
		if _, dup := s.clients[c.ClientID]; dup {
			return nil, fmt.Errorf("%s: client %q is there twice", path, c.ClientID)
		}
		sc := smart.Client{ID: c.ClientID, JWKSURL: c.JWKSURL, Scope: c.Scope}
		if c.JWKS != nil {
			sc.JWKS = *c.JWKS
		}
		s.clients[c.ClientID] = sc
	}
	if len(s.clients) == 0 {
		return nil, fmt.Errorf("%s: no clients", path)
	}
	s.verifier = &smart.Verifier{Clients: s.clients}
	return s, nil
}

// checkJWKSURL refuses a jwksUrl the server should not fetch: https only,
// but for this machine (http://127.0.0.1, localhost: a key service beside
// the server); no user info.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: not an absolute URL", printable(raw))
	}
	if u.User != nil {
		return fmt.Errorf("%q: no user info in it", printable(u.Redacted()))
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname())) {
		return fmt.Errorf("%q: https only (http only on this machine)", printable(raw))
	}
	return nil
}

// IsLoopback reports whether a host (a name or an address) is this
// machine only: localhost, 127.0.0.0/8, ::1.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tokenURL is the token endpoint's URL as the client reached it: what its
// assertion's aud must be.
func (s *Server) tokenURL(r *http.Request) string { return s.origin(r) + "/auth/token" }

// smartConfiguration is GET /.well-known/smart-configuration (also under
// /fhir/).
func (s *Server) smartConfiguration(w http.ResponseWriter, r *http.Request) {
	if s.cfg.SMART == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                                   s.tokenURL(r),
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/*.read", "system/*.rs"},
		"capabilities":                                     []string{"client-confidential-asymmetric"},
	})
}

// token is POST /auth/token: the client-credentials grant with a JWT
// client assertion; errors as OAuth2 words them.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if s.cfg.SMART == nil {
		notFound(w, r)
		return
	}
	oauth := func(status int, code, desc string) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauth(http.StatusBadRequest, "invalid_request", "the body is not a form (application/x-www-form-urlencoded) of at most 64 KiB")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "client_credentials":
		oauth(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	case f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		oauth(http.StatusBadRequest, "invalid_request", "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		return
	case f.Get("client_assertion") == "":
		oauth(http.StatusBadRequest, "invalid_request", "no client_assertion")
		return
	}
	c, err := s.cfg.SMART.verifier.Verify(r.Context(), f.Get("client_assertion"), s.tokenURL(r))
	var oe *smart.OAuthError
	if errors.As(err, &oe) {
		setCaller(r, "-")
		oauth(http.StatusUnauthorized, oe.Code, oe.Description)
		return
	} else if err != nil {
		oauth(http.StatusInternalServerError, "server_error", "the assertion could not be checked")
		return
	}
	setCaller(r, c.ID)
	scope, err := smart.GrantScope(c, f.Get("scope"))
	if errors.As(err, &oe) {
		oauth(http.StatusBadRequest, oe.Code, oe.Description)
		return
	}
	tok, err := s.cfg.SMART.issue(c.ID, scope, s.cfg.Now())
	if err != nil {
		oauth(http.StatusInternalServerError, "server_error", "no token could be made")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": int(TokenLifetime.Seconds()), "scope": scope})
}

// tokenState is what a bearer token is to the SMART clients' tokens.
type tokenState int

const (
	tokenUnknown tokenState = iota
	tokenLive
	tokenExpired
)

// lookup finds an access token issued here.
func (m *SMART) lookup(tok string, now time.Time) (issued, tokenState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	is, ok := m.tokens[tok]
	switch {
	case !ok:
		return issued{}, tokenUnknown
	case now.After(is.until):
		return is, tokenExpired
	}
	return is, tokenLive
}

// caller is the Caller of a live SMART access token.
func (is issued) caller() Caller {
	c := Caller{Name: is.client, Rights: Read, SMART: true}
	c.AllTypes, c.Types = smart.Readable(is.scope)
	return c
}

// bearer is the token of r's Authorization: Bearer header, if any.
func bearer(r *http.Request) (string, bool) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return "", false
	}
	return strings.TrimSpace(cred), true
}

// issue makes an access token for client with scope, living TokenLifetime.
func (m *SMART) issue(client, scope string, now time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, is := range m.tokens {
		if now.After(is.until.Add(expiredKept)) {
			delete(m.tokens, t)
		}
	}
	m.tokens[tok] = issued{client: client, scope: scope, until: now.Add(TokenLifetime)}
	return tok, nil
}
