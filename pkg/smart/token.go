package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// DefaultScope is the scope asked for when TokenSource.Scope is empty:
// read access to every resource type, what a bulk export needs.
const DefaultScope = "system/*.read"

// DefaultTokenLifetime is how long a token is taken to live when the
// answer has no expires_in (RFC 6749 makes it optional; SMART servers
// issue tokens of five minutes or less).
const DefaultTokenLifetime = 300 * time.Second

// maxRenewMargin: a token is renewed this long before it expires, or at
// half its lifetime if that is sooner.
const maxRenewMargin = 60 * time.Second

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// TokenSource gets access tokens from a SMART token endpoint with the
// client-credentials grant and a JWT client assertion, and caches them.
// Set the fields before the first call and leave them; a TokenSource is
// then safe for concurrent use and must not be copied. Its String and
// GoString show neither the token nor the key.
type TokenSource struct {
	// Client sends the requests; nil is http.DefaultClient.
	Client *http.Client
	// TokenURL is the token endpoint, also the assertions' aud.
	TokenURL string
	// ClientID is the client id the server registered: iss and sub.
	ClientID string
	// Scope is asked for; "" is DefaultScope.
	Scope string
	// Key signs the assertions.
	Key *Key
	// Now is the clock; nil is time.Now. For tests.
	Now func() time.Time
	// Backoff is the first wait before asking again after a 429, a 503 or
	// a network error without Retry-After (doubled each time; 0: 500ms).
	Backoff time.Duration

	mu      sync.Mutex
	cur     *token // held behind a pointer: %v of a TokenSource prints an address, not the token
	pending *call
	fetches int
}

type token struct {
	value   string
	renewAt time.Time
}

// call is a fetch under way; its waiters read tok and err once done is
// closed.
type call struct {
	done chan struct{}
	tok  *token
	err  error
	// own is set when err is the fetcher's own context's: its waiters try
	// again rather than fail with another's cancellation.
	own bool
}

func (ts *TokenSource) now() time.Time {
	if ts.Now != nil {
		return ts.Now()
	}
	return time.Now()
}

// Token returns an access token: the cached one, or a new one when there
// is none or the cached one is about to expire. "About to" is a margin of
// min(60 s, lifetime/2) before its expiry (the lifetime is expires_in,
// counted from when the request was sent), so that a token of an hour is
// renewed a minute before it ends, one of 60 s after 30 s and one of 2 s
// after 1 s: a request that starts with it has time to be accepted.
//
// One fetch runs at a time: the callers that come meanwhile wait for it and
// get its token or its error; a waiter whose ctx ends gets ctx.Err().
func (ts *TokenSource) Token(ctx context.Context) (string, error) {
	for {
		ts.mu.Lock()
		if ts.cur != nil && ts.now().Before(ts.cur.renewAt) {
			v := ts.cur.value
			ts.mu.Unlock()
			return v, nil
		}
		if c := ts.pending; c != nil {
			ts.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			if c.own {
				continue
			}
			if c.err != nil {
				return "", c.err
			}
			return c.tok.value, nil
		}
		c := &call{done: make(chan struct{})}
		ts.pending = c
		ts.mu.Unlock()

		c.tok, c.err = ts.fetch(ctx)
		c.own = c.err != nil && ctx.Err() != nil

		ts.mu.Lock()
		ts.pending = nil
		if c.err == nil {
			ts.cur = c.tok
			ts.fetches++
		}
		ts.mu.Unlock()
		close(c.done)
		if c.err != nil {
			return "", c.err
		}
		return c.tok.value, nil
	}
}

// Invalidate forgets token if it is still the cached one: call it after
// the server answered 401 to a request that carried it. A token already
// replaced is left alone, so that many requests refused at once cause one
// fetch.
func (ts *TokenSource) Invalidate(token string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.cur != nil && ts.cur.value == token {
		ts.cur = nil
	}
}

// Fetches is how many tokens have been fetched.
func (ts *TokenSource) Fetches() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.fetches
}

// String names the endpoint, client and key, never the token.
func (ts *TokenSource) String() string {
	k := "no key"
	if ts.Key != nil {
		k = ts.Key.String()
	}
	return fmt.Sprintf("smart.TokenSource{%s, client %q, %s}", source.Redact(ts.TokenURL), ts.ClientID, k)
}

// GoString is String.
func (ts *TokenSource) GoString() string { return ts.String() }

// TokenError is a token endpoint's OAuth 2.0 error answer (RFC 6749 5.2):
// invalid_client (the assertion or its key was refused), invalid_scope,
// unauthorized_client and so on.
type TokenError struct {
	// URL is the token endpoint, redacted.
	URL string
	// Status is the HTTP status.
	Status int
	// Code is "error"; Description is "error_description", made one line
	// of at most 200 characters.
	Code, Description string
}

// Error is one line: "token endpoint URL: CODE: DESCRIPTION (HTTP STATUS)".
func (e *TokenError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("token endpoint %s: %s (HTTP %d)", e.URL, e.Code, e.Status)
	}
	return fmt.Sprintf("token endpoint %s: %s: %s (HTTP %d)", e.URL, e.Code, e.Description, e.Status)
}

// tokenAnswer is RFC 6749 5.1 and 5.2 in one.
type tokenAnswer struct {
	AccessToken *string         `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	Error       string          `json:"error"`
	Description string          `json:"error_description"`
}

func (ts *TokenSource) fetch(ctx context.Context) (*token, error) {
	if ts.Key == nil {
		return nil, errors.New("smart: TokenSource has no Key")
	}
	u, err := url.Parse(ts.TokenURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("token URL %s is not an http(s) URL", source.Redact(ts.TokenURL))
	}
	where := "token endpoint " + source.Redact(u.String())
	scope := ts.Scope
	if scope == "" {
		scope = DefaultScope
	}
	var sent time.Time
	resp, err := doRetry(ctx, ts.Client, ts.now, ts.Backoff, where, func() (*http.Request, error) {
		sent = ts.now()
		a, err := ts.Key.Assertion(ts.ClientID, ts.TokenURL, sent)
		if err != nil {
			return nil, err
		}
		form := url.Values{
			"grant_type":            {"client_credentials"},
			"scope":                 {scope},
			"client_assertion_type": {assertionType},
			"client_assertion":      {a},
		}
		req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return nil, fmt.Errorf("%s: %s", where, source.RedactText(oneLine(err.Error(), 200)))
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readBounded(resp, where, "a token")
	if err != nil {
		return nil, err
	}
	var a tokenAnswer
	if json.Unmarshal(body, &a) != nil {
		return nil, fmt.Errorf("%s answered HTTP %d (%s), not a token", where, resp.StatusCode, mediaType(resp))
	}
	if a.Error != "" {
		return nil, &TokenError{URL: source.Redact(u.String()), Status: resp.StatusCode, Code: oneLine(a.Error, 80), Description: source.RedactText(oneLine(a.Description, 200))}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered HTTP %d (%s), not a token", where, resp.StatusCode, mediaType(resp))
	}
	if a.AccessToken == nil || *a.AccessToken == "" {
		return nil, fmt.Errorf("%s answered without an access_token", where)
	}
	if !strings.EqualFold(a.TokenType, "bearer") {
		if a.TokenType == "" {
			return nil, fmt.Errorf("%s answered without a token_type (bearer expected)", where)
		}
		return nil, fmt.Errorf("%s answered token_type %s, not bearer", where, quote(a.TokenType))
	}
	life, err := expiresIn(a.ExpiresIn)
	if err != nil {
		return nil, fmt.Errorf("%s answered %w", where, err)
	}
	margin := min(maxRenewMargin, life/2)
	return &token{value: *a.AccessToken, renewAt: sent.Add(life - margin)}, nil
}

// expiresIn reads expires_in: seconds, as a number or (some servers) a
// string of digits; absent or null is DefaultTokenLifetime.
func expiresIn(raw json.RawMessage) (time.Duration, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return DefaultTokenLifetime, nil
	}
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, errors.New("an expires_in that is not a number of seconds")
	}
	return time.Duration(f * float64(time.Second)), nil
}
