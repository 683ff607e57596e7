package smart

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The server side of SMART Backend Services (the HL7 $export server's
// token endpoint): a client's assertion is checked as the SMART spec says,
// against the JWKS the client registered.

// Client is a registered client: its id, the public keys it signs with,
// and the scopes it may be given.
type Client struct {
	ID   string
	JWKS jose.JSONWebKeySet
	// JWKSURL, when not "", is where the client publishes its JWKS
	// instead (SMART's jwks_url): fetched when needed, kept for JWKSLifetime,
	// fetched again for a kid it does not hold (a key rotated).
	JWKSURL string
	Scope   string // space-separated, e.g. "system/*.read"
}

// OAuthError is a refusal of the token endpoint, as OAuth2 words it:
// Code invalid_client, invalid_request, invalid_scope, unsupported_grant_type.
type OAuthError struct {
	Code        string
	Description string
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Description }

// clockSkew is how far a client's clock may run ahead of ours.
const clockSkew = 10 * time.Second

// Verifier checks client assertions. Safe for concurrent use.
type Verifier struct {
	Clients map[string]Client // by id
	Now     func() time.Time  // nil: time.Now
	// HTTP fetches the clients' jwksUrl; nil: a client with a 10 s
	// timeout.
	HTTP *http.Client

	mu   sync.Mutex
	seen map[string]time.Time // jti (per client) → until when it is remembered

	fetchMu  sync.Mutex // guards the three below
	jwks     map[string]fetchedJWKS
	fetches  int
	urlLocks map[string]*sync.Mutex // one fetch at a time per URL (a slow key host delays its own clients only)
}

type fetchedJWKS struct {
	keys jose.JSONWebKeySet
	err  error
	at   time.Time
}

// JWKSLifetime is how long a fetched JWKS is used; JWKSRefetch how soon a
// kid it lacks may have it fetched again (so that forged kids cannot make
// the server fetch on each request).
const (
	JWKSLifetime = 5 * time.Minute
	JWKSRefetch  = 10 * time.Second
	maxJWKS      = 256 << 10
)

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify checks a client assertion: signed RS384 or ES384 by a key of the
// client's JWKS (named by the header's kid, or its RFC 7638 thumbprint),
// iss = sub = a registered client id, aud = tokenURL (the endpoint as the
// client reached it), exp not past and
// no more than 5 minutes ahead, a jti not seen before within its lifetime.
// It returns the client, or an *OAuthError of code invalid_client saying
// what failed (never the assertion itself).
func (v *Verifier) Verify(ctx context.Context, assertion, tokenURL string) (Client, error) {
	refuse := func(format string, args ...any) (Client, error) {
		return Client{}, &OAuthError{Code: "invalid_client", Description: fmt.Sprintf(format, args...)}
	}
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return refuse("the client assertion is not a JWT signed RS384 or ES384")
	}
	if len(tok.Headers) != 1 {
		return refuse("the client assertion has %d signatures, not 1", len(tok.Headers))
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return refuse("the client assertion's claims do not parse")
	}
	c, ok := v.Clients[unverified.Issuer]
	if !ok {
		return refuse("no client %q is registered", printable(unverified.Issuer))
	}
	kid := tok.Headers[0].KeyID
	if kid == "" {
		return refuse("the client assertion's header has no kid")
	}
	jwks := c.JWKS
	if c.JWKSURL != "" {
		var err error
		if jwks, err = v.fetched(ctx, c.JWKSURL, kid); err != nil {
			return refuse("the JWKS at the jwksUrl of client %s could not be read", c.ID)
		}
	}
	key, ok := findKey(jwks, kid)
	if !ok {
		return refuse("kid %q is not a key of client %s", printable(kid), c.ID)
	}
	var claims jwt.Claims
	if err := tok.Claims(key.Key, &claims); err != nil {
		return refuse("the signature does not match the key %q of client %s", printable(kid), c.ID)
	}
	now := v.now()
	switch {
	case claims.Subject != c.ID:
		return refuse("sub is not the client id (iss)")
	case len(claims.Audience) != 1 || claims.Audience[0] != tokenURL:
		return refuse("aud is not the token URL %s", tokenURL)
	case claims.Expiry == nil:
		return refuse("no exp")
	case !now.Before(claims.Expiry.Time().Add(clockSkew)):
		return refuse("exp is past")
	case claims.Expiry.Time().After(now.Add(5*time.Minute + clockSkew)):
		return refuse("exp is more than 5 minutes ahead")
	case claims.ID == "":
		return refuse("no jti")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for k, until := range v.seen {
		if now.After(until) {
			delete(v.seen, k)
		}
	}
	id := c.ID + "\x00" + claims.ID
	if _, replay := v.seen[id]; replay {
		return refuse("jti replayed")
	}
	v.seen[id] = claims.Expiry.Time().Add(clockSkew)
	return c, nil
}

// fetched is the JWKS at url: the one fetched within JWKSLifetime, unless it
// lacks kid and was fetched over JWKSRefetch ago.
func (v *Verifier) fetched(ctx context.Context, url, kid string) (jose.JSONWebKeySet, error) {
	v.fetchMu.Lock()
	if v.urlLocks == nil {
		v.urlLocks, v.jwks = map[string]*sync.Mutex{}, map[string]fetchedJWKS{}
	}
	l := v.urlLocks[url]
	if l == nil {
		l = &sync.Mutex{}
		v.urlLocks[url] = l
	}
	v.fetchMu.Unlock()
	l.Lock()
	defer l.Unlock()
	v.fetchMu.Lock()
	f, ok := v.jwks[url]
	v.fetchMu.Unlock()
	now := v.now()
	if ok && now.Sub(f.at) < JWKSLifetime {
		if _, has := findKey(f.keys, kid); has || now.Sub(f.at) < JWKSRefetch {
			return f.keys, f.err // a failure too is kept JWKSRefetch
		}
	}
	keys, err := v.fetch(ctx, url)
	v.fetchMu.Lock()
	v.jwks[url] = fetchedJWKS{keys: keys, err: err, at: now}
	v.fetches++
	v.fetchMu.Unlock()
	return keys, err
}

// Fetches is how many times a JWKS was fetched (for tests).
func (v *Verifier) Fetches() int {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	return v.fetches
}

func (v *Verifier) fetch(ctx context.Context, url string) (jose.JSONWebKeySet, error) {
	client := v.HTTP
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	// No redirects: the URL the operator registered is the one read.
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client = &c
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return jose.JSONWebKeySet{}, errors.New("the request failed")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jose.JSONWebKeySet{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return jose.JSONWebKeySet{}, errors.New("the body could not be read")
	}
	if len(data) > maxJWKS {
		return jose.JSONWebKeySet{}, fmt.Errorf("over %d KiB", maxJWKS>>10)
	}
	var keys jose.JSONWebKeySet
	if err := json.Unmarshal(data, &keys); err != nil || len(keys.Keys) == 0 {
		return jose.JSONWebKeySet{}, errors.New("not a JWKS with keys")
	}
	return keys, nil
}

// findKey is the public key of jwks that kid names: by its kid, or by its
// RFC 7638 thumbprint (what a client with a PEM key and no kid sends).
func findKey(jwks jose.JSONWebKeySet, kid string) (jose.JSONWebKey, bool) {
	if keys := jwks.Key(kid); len(keys) == 1 {
		return keys[0].Public(), true
	}
	for _, k := range jwks.Keys {
		pub := k.Public()
		if sum, err := pub.Thumbprint(crypto.SHA256); err == nil && base64.RawURLEncoding.EncodeToString(sum) == kid {
			return pub, true
		}
	}
	return jose.JSONWebKey{}, false
}

// GrantScope is the scope a client asked (space-separated) cut to what it
// may have: the scopes it asked that it is registered for, or an
// *OAuthError invalid_scope when none is left.
func GrantScope(c Client, asked string) (string, error) {
	allowed := strings.Fields(c.Scope)
	var granted []string
	for _, s := range strings.Fields(asked) {
		if slices.Contains(allowed, s) {
			granted = append(granted, s)
		}
	}
	if len(granted) == 0 {
		return "", &OAuthError{Code: "invalid_scope", Description: fmt.Sprintf("client %s may have %q, not %q", c.ID, c.Scope, printable(asked))}
	}
	return strings.Join(granted, " "), nil
}

// printable cuts a caller's string for a message.
func printable(s string) string { return oneLine(s, 80) }
