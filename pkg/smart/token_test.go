package smart

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// clock is a fake Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tokenServer is a token endpoint that checks each request as a SMART
// server does (form, assertion signature by the registered key, aud its
// own URL, iss and sub, jti never seen) and answers what answer says; by
// default a bearer token "tok-N" with expires_in.
type tokenServer struct {
	t        *testing.T
	srv      *httptest.Server
	url      string
	pub      crypto.PublicKey
	clientID string
	clock    *clock

	mu         sync.Mutex
	requests   int
	jtis       map[string]bool
	assertions []string
	expiresIn  string // JSON of expires_in; "" leaves it out
	// answer, when set, answers request n (1, 2, ...) instead; it returns
	// false to give the default answer.
	answer func(n int, w http.ResponseWriter, r *http.Request) bool
}

func newTokenServer(t *testing.T, pub crypto.PublicKey, c *clock) *tokenServer {
	ts := &tokenServer{t: t, pub: pub, clientID: "client-7", clock: c, jtis: map[string]bool{}, expiresIn: "3600"}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	ts.url = ts.srv.URL + "/token"
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	t := ts.t
	ts.mu.Lock()
	ts.requests++
	n := ts.requests
	answer := ts.answer
	ts.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		t.Errorf("%s %s", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", ct)
	}
	if a := r.Header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept %q", a)
	}
	if err := r.ParseForm(); err != nil {
		t.Error(err)
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" || f.Get("client_assertion_type") != assertionType || f.Get("scope") == "" {
		t.Errorf("form %v", f)
	}
	a := f.Get("client_assertion")
	tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		t.Errorf("assertion: %v", err)
		http.Error(w, "bad", 400)
		return
	}
	var c jwt.Claims
	if err := tok.Claims(ts.pub, &c); err != nil {
		t.Errorf("assertion signature: %v", err)
	}
	now := time.Now()
	if ts.clock != nil {
		now = ts.clock.Now()
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: ts.clientID, Subject: ts.clientID, AnyAudience: jwt.Audience{ts.url}, Time: now}, 0); err != nil {
		t.Errorf("assertion claims: %v", err)
	}
	if c.Expiry.Time().Sub(now) > 5*time.Minute {
		t.Errorf("exp %v ahead", c.Expiry.Time().Sub(now))
	}
	ts.mu.Lock()
	if ts.jtis[c.ID] {
		t.Errorf("jti %s used twice", c.ID)
	}
	ts.jtis[c.ID] = true
	ts.assertions = append(ts.assertions, a)
	exp := ts.expiresIn
	ts.mu.Unlock()
	if answer != nil && answer(n, w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	body := fmt.Sprintf(`{"access_token":"tok-%d","token_type":"Bearer","scope":%q`, n, f.Get("scope"))
	if exp != "" {
		body += `,"expires_in":` + exp
	}
	fmt.Fprint(w, body+"}")
}

func (ts *tokenServer) Requests() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.requests
}

// assertNoSecret checks an error against every assertion sent and every
// token the server could have given.
func (ts *tokenServer) assertNoSecret(err error) {
	ts.t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	msg := err.Error()
	for _, a := range ts.assertions {
		for _, part := range strings.Split(a, ".") {
			if len(part) >= 16 && strings.Contains(msg, part[:16]) {
				ts.t.Errorf("error %q holds the assertion", msg)
			}
		}
	}
	for i := 1; i <= ts.requests; i++ {
		if strings.Contains(msg, "tok-"+strconv.Itoa(i)) {
			ts.t.Errorf("error %q holds a token", msg)
		}
	}
}

func rsaTestKey(t *testing.T) *Key {
	t.Helper()
	keys(t)
	k, err := newKey(rsaKey, "", "test-kid")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (ts *tokenServer) source(k *Key) *TokenSource {
	src := &TokenSource{TokenURL: ts.url, ClientID: ts.clientID, Key: k, Backoff: time.Millisecond}
	if ts.clock != nil {
		src.Now = ts.clock.Now
	}
	return src
}

func TestTokenCache(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	src := srv.source(k)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "tok-1" {
			t.Fatalf("token %q", tok)
		}
	}
	if srv.Requests() != 1 || src.Fetches() != 1 {
		t.Errorf("%d requests, %d fetches; want 1", srv.Requests(), src.Fetches())
	}
	src.Invalidate("tok-0") // not the cached one: kept
	if tok, _ := src.Token(ctx); tok != "tok-1" {
		t.Errorf("after invalidating another token: %q", tok)
	}
	src.Invalidate("tok-1")
	if tok, err := src.Token(ctx); err != nil || tok != "tok-2" {
		t.Errorf("after Invalidate: %q, %v", tok, err)
	}
	src.Invalidate("tok-1") // a late 401 with the old token: tok-2 stays
	if tok, _ := src.Token(ctx); tok != "tok-2" || srv.Requests() != 2 {
		t.Errorf("after a stale Invalidate: %q, %d requests", tok, srv.Requests())
	}
}

func TestTokenScope(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	var scopes []string
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		scopes = append(scopes, r.PostForm.Get("scope"))
		return false
	}
	src := srv.source(k)
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	src2 := srv.source(k)
	src2.Scope = "system/Patient.read system/Observation.read"
	if _, err := src2.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(scopes) != 2 || scopes[0] != "system/*.read" || scopes[1] != src2.Scope {
		t.Errorf("scopes %q", scopes)
	}
}

func TestTokenRefresh(t *testing.T) {
	k := rsaTestKey(t)
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	srv := newTokenServer(t, rsaKey.Public(), c)
	srv.expiresIn = "2"
	src := srv.source(k)
	ctx := context.Background()
	get := func(want string) {
		t.Helper()
		tok, err := src.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok != want {
			t.Errorf("at %v: token %q, want %q", c.Now().Format("15:04:05.000"), tok, want)
		}
	}
	get("tok-1")
	c.Advance(900 * time.Millisecond)
	get("tok-1") // renewed after half its 2 s
	c.Advance(600 * time.Millisecond)
	get("tok-2")

	// 60 s: renewed after 30 s. An hour: a minute before its end.
	srv.expiresIn = `"60"` // a string, as some servers send it
	src.Invalidate("tok-2")
	get("tok-3")
	c.Advance(29 * time.Second)
	get("tok-3")
	c.Advance(2 * time.Second)
	get("tok-4")
	srv.expiresIn = "3600"
	src.Invalidate("tok-4")
	get("tok-5")
	c.Advance(58 * time.Minute)
	get("tok-5")
	c.Advance(90 * time.Second)
	get("tok-6")

	// No expires_in: 300 s, renewed a minute before.
	srv.expiresIn = ""
	src.Invalidate("tok-6")
	get("tok-7")
	c.Advance(239 * time.Second)
	get("tok-7")
	c.Advance(2 * time.Second)
	get("tok-8")
}

func TestTokenConcurrent(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	release := make(chan struct{})
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		<-release
		return false
	}
	src := srv.source(k)
	const n = 20
	var started, done sync.WaitGroup
	toks := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			toks[i], errs[i] = src.Token(context.Background())
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != "tok-1" {
			t.Errorf("goroutine %d: %q, %v", i, toks[i], errs[i])
		}
	}
	if srv.Requests() != 1 || src.Fetches() != 1 {
		t.Errorf("%d requests, %d fetches; want 1", srv.Requests(), src.Fetches())
	}

	// Concurrent 401s with the same token: one new fetch.
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			src.Invalidate("tok-1")
			if tok, err := src.Token(context.Background()); err != nil || tok == "tok-1" {
				t.Errorf("after Invalidate: %q, %v", tok, err)
			}
		}()
	}
	done.Wait()
	// A goroutine may invalidate tok-1 only while it is cached: at most
	// one more fetch, whatever the interleaving.
	if srv.Requests() != 2 {
		t.Errorf("%d requests after concurrent Invalidate; want 2", srv.Requests())
	}
}

func TestTokenWaiterCancelled(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	got, release := make(chan struct{}), make(chan struct{})
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			close(got)
			<-release
		}
		return false
	}
	src := srv.source(k)
	first := make(chan error, 1)
	go func() {
		_, err := src.Token(context.Background())
		first <- err
	}()
	<-got
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a cancelled ctx: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Error(err)
	}
}

func TestTokenFetcherCancelled(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	got := make(chan struct{})
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			close(got)
			<-r.Context().Done()
			return true
		}
		return false
	}
	src := srv.source(k)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := src.Token(ctx)
		first <- err
	}()
	<-got
	second := make(chan error, 1)
	go func() {
		tok, err := src.Token(context.Background())
		if err == nil && tok != "tok-2" {
			err = fmt.Errorf("token %q", tok)
		}
		second <- err
	}()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("fetcher: %v", err)
	}
	// The other caller does not inherit the fetcher's cancellation.
	if err := <-second; err != nil {
		t.Errorf("waiter: %v", err)
	}
}

func TestTokenErrors(t *testing.T) {
	k := rsaTestKey(t)
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		want   string // %s is the token URL
	}{
		{"oauth", 401, "application/json", `{"error":"invalid_client","error_description":"the signature\n\tdoes not match\u202e"}`,
			"token endpoint %s: invalid_client: the signature does not match (HTTP 401)"},
		{"oauth no description", 400, "application/json;charset=UTF-8", `{"error":"invalid_scope"}`,
			"token endpoint %s: invalid_scope (HTTP 400)"},
		{"oauth long description", 400, "application/json", `{"error":"invalid_request","error_description":"` + strings.Repeat("x", 300) + ` see https://u:p@idp/x?sig=s"}`,
			"token endpoint %s: invalid_request: " + strings.Repeat("x", 200) + "… (HTTP 400)"},
		{"description with url", 400, "application/json", `{"error":"invalid_request","error_description":"see https://u:p@idp.example/x?sig=s."}`,
			"token endpoint %s: invalid_request: see https://idp.example/x?…. (HTTP 400)"},
		{"html 404", 404, "text/html; charset=utf-8", "<html><body>Not Found</body></html>",
			"token endpoint %s answered HTTP 404 (text/html), not a token"},
		{"json not oauth", 500, "application/json", `{"message":"boom"}`,
			"token endpoint %s answered HTTP 500 (application/json), not a token"},
		{"no content type", 502, "", "",
			"token endpoint %s answered HTTP 502 (no Content-Type), not a token"},
		{"not bearer", 200, "application/json", `{"access_token":"tok-1","token_type":"mac"}`,
			`token endpoint %s answered token_type "mac", not bearer`},
		{"no token type", 200, "application/json", `{"access_token":"tok-1"}`,
			"token endpoint %s answered without a token_type (bearer expected)"},
		{"empty token", 200, "application/json", `{"access_token":"","token_type":"bearer"}`,
			"token endpoint %s answered without an access_token"},
		{"bad expires_in", 200, "application/json", `{"access_token":"tok-1","token_type":"bearer","expires_in":"soon"}`,
			"token endpoint %s answered an expires_in that is not a number of seconds"},
		{"huge", 200, "application/json", `{"access_token":"tok-1","token_type":"bearer","x":"` + strings.Repeat("x", 70<<10) + `"}`,
			"token endpoint %s answered HTTP 200 with over 64 KiB, too large for a token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTokenServer(t, rsaKey.Public(), nil)
			srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
				return true
			}
			src := srv.source(k)
			_, err := src.Token(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			if want := fmt.Sprintf(tc.want, srv.url); err.Error() != want {
				t.Errorf("error\n got %s\nwant %s", err, want)
			}
			srv.assertNoSecret(err)
			if strings.HasPrefix(tc.body, `{"error"`) {
				var te *TokenError
				if !errors.As(err, &te) || te.Status != tc.status || te.Code == "" {
					t.Errorf("not a TokenError: %#v", err)
				}
			}
			if srv.Requests() != 1 {
				t.Errorf("%d requests", srv.Requests())
			}
		})
	}
}

func TestTokenRetry(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			return true
		case 2:
			w.Header().Set("Retry-After", time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
			return true
		}
		return false
	}
	src := srv.source(k)
	tok, err := src.Token(context.Background())
	if err != nil || tok != "tok-3" {
		t.Fatalf("%q, %v", tok, err)
	}
	if srv.Requests() != 3 || src.Fetches() != 1 {
		t.Errorf("%d requests, %d fetches", srv.Requests(), src.Fetches())
	}

	// Always 503: given up after the retries, the last answer said.
	srv2 := newTokenServer(t, rsaKey.Public(), nil)
	srv2.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "0")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(503)
		return true
	}
	_, err = srv2.source(k).Token(context.Background())
	if want := "token endpoint " + srv2.url + " answered HTTP 503 (text/plain), not a token"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	if srv2.Requests() != 1+maxRetries {
		t.Errorf("%d requests", srv2.Requests())
	}
}

func TestTokenNetworkRetry(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return true
			}
			conn.Close()
			return true
		}
		return false
	}
	tok, err := srv.source(k).Token(context.Background())
	if err != nil || tok != "tok-2" {
		t.Fatalf("%q, %v", tok, err)
	}

	// Nothing listens: the error names the URL without its secrets.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	src := &TokenSource{TokenURL: "http://user:hunter2@" + addr + "/token?sig=s3cret", ClientID: "c", Key: k, Backoff: time.Millisecond}
	_, err = src.Token(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "token endpoint http://"+addr+"/token?…: ") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v", err)
	}
}

func TestTokenErrorURLRedacted(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	srv.answer = func(n int, w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":"invalid_client"}`)
		return true
	}
	src := srv.source(k)
	src.TokenURL += "?sig=s3cret"
	srv.url = src.TokenURL // the aud is the URL as given
	_, err := src.Token(context.Background())
	if want := "token endpoint " + srv.srv.URL + "/token?…: invalid_client (HTTP 401)"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	if _, err := (&TokenSource{TokenURL: "ftp://u:p@x/y", Key: k}).Token(context.Background()); err == nil || err.Error() != "token URL ftp://x/y is not an http(s) URL" {
		t.Errorf("ftp: %v", err)
	}
}

func TestTokenSourcePrintsNoSecret(t *testing.T) {
	k := rsaTestKey(t)
	srv := newTokenServer(t, rsaKey.Public(), nil)
	src := srv.source(k)
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := base64.RawURLEncoding.EncodeToString(rsaKey.D.Bytes())[:16]
	for _, s := range []string{fmt.Sprint(src), fmt.Sprintf("%+v", src), fmt.Sprintf("%#v", src), fmt.Sprintf("%v", []*TokenSource{src}), fmt.Sprintf("%+v", struct{ S *TokenSource }{src})} {
		if strings.Contains(s, "tok-1") || strings.Contains(s, d) || strings.Contains(s, rsaKey.D.String()[:16]) {
			t.Errorf("printed a secret: %s", s)
		}
		if !strings.Contains(s, `smart.TokenSource{`+srv.url+`, client "client-7", smart.Key{alg: RS384, kid: "test-kid"}}`) {
			t.Errorf("printed %s", s)
		}
	}
}
