package serve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirbulk/fhirbulk/pkg/smart"
)

// writePEM writes a private key as PKCS#8 PEM and loads it as a client key.
func writePEM(t *testing.T, dir, name string, key any) *smart.Key {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	k, err := smart.LoadKey(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// registered writes a --smart-clients file of clients in dir and loads it.
func registered(t *testing.T, dir string, clients ...map[string]any) *SMART {
	t.Helper()
	data, _ := json.Marshal(clients)
	path := filepath.Join(dir, "clients.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := LoadClients(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// jwksOf is the JWKS of public keys.
func jwksOf(keys ...*smart.Key) jose.JSONWebKeySet {
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public())
	}
	return set
}

// Our own SMART client (pkg/smart) against the server's token endpoint:
// discovery, a token for an RS384 and an ES384 key, and OAuth2's refusals.
func TestTokenEndpoint(t *testing.T) {
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	wk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaKey, ecKey, wrong := writePEM(t, dir, "r1", rk), writePEM(t, dir, "e1", ek), writePEM(t, dir, "r1-wrong", wk)
	m := registered(t, dir, map[string]any{"clientId": "app", "scope": "system/*.read", "jwks": jwksOf(rsaKey, ecKey)})
	srv := httptest.NewServer(New(Config{DSN: "postgres://unused", SMART: m}).Handler())
	defer srv.Close()

	cfg, err := smart.Discover(context.Background(), srv.Client(), srv.URL+"/fhir")
	if err != nil || cfg.TokenEndpoint != srv.URL+"/auth/token" {
		t.Fatalf("discover: %+v %v", cfg, err)
	}
	for _, k := range []*smart.Key{rsaKey, ecKey} {
		ts := &smart.TokenSource{Client: srv.Client(), TokenURL: cfg.TokenEndpoint, ClientID: "app", Key: k}
		tok, err := ts.Token(context.Background())
		if err != nil || len(tok) != 64 {
			t.Errorf("%s: %q %v", k.Alg(), tok, err)
		}
	}
	refused := func(ts *smart.TokenSource, code string) {
		t.Helper()
		_, err := ts.Token(context.Background())
		var te *smart.TokenError
		if !errors.As(err, &te) || te.Code != code {
			t.Errorf("want %s: %v", code, err)
		}
	}
	refused(&smart.TokenSource{Client: srv.Client(), TokenURL: cfg.TokenEndpoint, ClientID: "app", Key: wrong}, "invalid_client")
	refused(&smart.TokenSource{Client: srv.Client(), TokenURL: cfg.TokenEndpoint, ClientID: "nobody", Key: rsaKey}, "invalid_client")
	refused(&smart.TokenSource{Client: srv.Client(), TokenURL: cfg.TokenEndpoint, ClientID: "app", Key: rsaKey, Scope: "system/*.write"}, "invalid_scope")

	// A replayed assertion; a form without the grant or the assertion type.
	a, _ := rsaKey.Assertion("app", cfg.TokenEndpoint, time.Now())
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.read"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	for i, want := range []int{200, 401} {
		resp, err := srv.Client().PostForm(cfg.TokenEndpoint, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("try %d: %s, Cache-Control %q", i, resp.Status, resp.Header.Get("Cache-Control"))
		}
	}
	for field, code := range map[string]string{"grant_type": "unsupported_grant_type", "client_assertion_type": "invalid_request", "client_assertion": "invalid_request"} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set(field, "x")
		if field == "client_assertion" {
			f.Del(field)
		}
		resp, _ := srv.Client().PostForm(cfg.TokenEndpoint, f)
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if body["error"] != code {
			t.Errorf("%s: %v", field, body)
		}
	}
	if resp, _ := srv.Client().Get(cfg.TokenEndpoint); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET token: %s", resp.Status)
	}
}

func TestLoadClientsRefusals(t *testing.T) {
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	priv := jose.JSONWebKey{Key: rk, KeyID: "p", Algorithm: "RS384"}
	pub := priv.Public()
	for name, tc := range map[string]struct {
		body any
		want string
	}{
		"private key":  {[]map[string]any{{"clientId": "a", "scope": "system/*.read", "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv}}}}, "holds a private key"},
		"jwksUrl http": {[]map[string]any{{"clientId": "a", "scope": "system/*.read", "jwksUrl": "http://keys.example/jwks"}}, "https only (http only on this machine)"},
		"jwksUrl user": {[]map[string]any{{"clientId": "a", "scope": "system/*.read", "jwksUrl": "https://u:secret@keys.example/jwks"}}, "no user info"},
		"jwksUrl rel":  {[]map[string]any{{"clientId": "a", "scope": "system/*.read", "jwksUrl": "/jwks"}}, "not an absolute URL"},
		"jwks and url": {[]map[string]any{{"clientId": "a", "scope": "system/*.read", "jwksUrl": "https://k/jwks", "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}}}, "not both"},
		"no scope":     {[]map[string]any{{"clientId": "a", "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}}}, "has no scope"},
		"no id":        {[]map[string]any{{"scope": "s", "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}}}, "has no clientId"},
		"twice":        {[]map[string]any{{"clientId": "a", "scope": "s", "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}}, {"clientId": "a", "scope": "s", "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}}}, "is there twice"},
		"empty":        {[]any{}, "no clients"},
		"not an array": {map[string]any{"clientId": "a"}, "not a JSON array"},
	} {
		data, _ := json.Marshal(tc.body)
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o600)
		if _, err := LoadClients(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A SMART access token opens $export for TokenLifetime: after it, the
// kick-off, status and files are a 401 saying the token expired
// (invalid_token, as RFC 6750 words it), and no job starts.
func TestExportTokenExpires(t *testing.T) {
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	key := writePEM(t, dir, "r1", rk)
	m := registered(t, dir, map[string]any{"clientId": "app", "scope": "system/Patient.read", "jwks": jwksOf(key)})
	x, err := OpenExports(ExportConfig{Dir: filepath.Join(dir, "exports")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	now := time.Now()
	clock := func() time.Time { return now }
	srv := httptest.NewServer(New(Config{DSN: "postgres://unused", SMART: m, Exports: x, Now: clock}).Handler())
	defer srv.Close()
	ts := &smart.TokenSource{Client: srv.Client(), TokenURL: srv.URL + "/auth/token", ClientID: "app", Scope: "system/Patient.read", Key: key}
	tok, err := ts.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Prefer", "respond-async")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// Live: a type outside its scope is a 403 (before any job).
	if resp := get("/fhir/$export?_type=Observation"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("Observation with system/Patient.read: %d", resp.StatusCode)
	}
	now = now.Add(TokenLifetime + time.Second)
	for _, p := range []string{"/fhir/$export", "/fhir/$export-status/0123456789abcdef0123456789abcdef", "/fhir/$export-files/0123456789abcdef0123456789abcdef/Patient.ndjson"} {
		resp := get(p)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s after expiry: %d %q", p, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	x.mu.Lock()
	n := len(x.jobs)
	x.mu.Unlock()
	if n != 0 {
		t.Errorf("%d jobs started", n)
	}
}

// A client registered by jwksUrl: its JWKS is fetched when a token is
// asked, kept, and fetched again for a kid it lacks (a rotated key), but
// not more than every smart.JWKSRefetch for forged kids; an unreachable or
// broken JWKS refuses the client.
func TestTokenJWKSURL(t *testing.T) {
	dir := t.TempDir()
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	key1, key2 := writePEM(t, dir, "k1", k1), writePEM(t, dir, "k2", k2)
	var mu sync.Mutex
	published := []jose.JSONWebKey{key1.Public()}
	broken := false
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			w.Write([]byte("<html>"))
			return
		}
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: published})
	}))
	defer keys.Close()
	m := registered(t, dir, map[string]any{"clientId": "app", "scope": "system/*.read", "jwksUrl": keys.URL + "/jwks"})
	now := time.Now()
	m.verifier.Now = func() time.Time { return now }
	srv := httptest.NewServer(New(Config{DSN: "postgres://unused", SMART: m}).Handler())
	defer srv.Close()
	token := func(k *smart.Key) error {
		ts := &smart.TokenSource{Client: srv.Client(), TokenURL: srv.URL + "/auth/token", ClientID: "app", Key: k}
		_, err := ts.Token(context.Background())
		return err
	}
	if err := token(key1); err != nil || m.verifier.Fetches() != 1 {
		t.Fatalf("key 1: %v, %d fetches", err, m.verifier.Fetches())
	}
	if err := token(key1); err != nil || m.verifier.Fetches() != 1 {
		t.Fatalf("key 1 again: %v, %d fetches (kept)", err, m.verifier.Fetches())
	}
	// Key 2 within JWKSRefetch of the fetch: refused without a fetch (a
	// forged kid costs nothing); later, fetched again, still refused (not
	// published yet); asked again at once, no new fetch.
	if err := token(key2); err == nil || m.verifier.Fetches() != 1 {
		t.Fatalf("key 2 at once: %v, %d fetches", err, m.verifier.Fetches())
	}
	now = now.Add(smart.JWKSRefetch + time.Second)
	if err := token(key2); err == nil || m.verifier.Fetches() != 2 {
		t.Fatalf("key 2 unpublished: %v, %d fetches", err, m.verifier.Fetches())
	}
	if err := token(key2); err == nil || m.verifier.Fetches() != 2 {
		t.Fatalf("key 2 again at once: %v, %d fetches (not refetched)", err, m.verifier.Fetches())
	}
	// Published (rotated), and later than smart.JWKSRefetch: fetched, taken.
	mu.Lock()
	published = []jose.JSONWebKey{key2.Public()}
	mu.Unlock()
	now = now.Add(smart.JWKSRefetch + time.Second)
	if err := token(key2); err != nil || m.verifier.Fetches() != 3 {
		t.Fatalf("key 2 published: %v, %d fetches", err, m.verifier.Fetches())
	}
	// After smart.JWKSLifetime a broken JWKS: refused, saying so.
	mu.Lock()
	broken = true
	mu.Unlock()
	now = now.Add(smart.JWKSLifetime + time.Second)
	if err := token(key2); err == nil || !strings.Contains(err.Error(), "jwksUrl of client app could not be read (HTTP 401)") {
		t.Fatalf("broken JWKS: %v", err)
	}
	// A failure is kept too: forged assertions at once fetch nothing more.
	n := m.verifier.Fetches()
	for range 5 {
		token(key2)
	}
	if m.verifier.Fetches() != n {
		t.Errorf("%d fetches after a failure, want none", m.verifier.Fetches()-n)
	}
}

// Behind a proxy that ends TLS, --public-url is what the client sees: the
// token endpoint it is told, and the aud its assertion names.
func TestPublicURL(t *testing.T) {
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	key := writePEM(t, dir, "r1", rk)
	m := registered(t, dir, map[string]any{"clientId": "app", "scope": "system/*.read", "jwks": jwksOf(key)})
	srv := httptest.NewServer(New(Config{DSN: "postgres://unused", SMART: m, PublicURL: "https://fhir.example.org"}).Handler())
	defer srv.Close()
	cfg, err := smart.Discover(context.Background(), srv.Client(), srv.URL+"/fhir")
	if err != nil || cfg.TokenEndpoint != "https://fhir.example.org/auth/token" {
		t.Fatalf("discover: %+v %v", cfg, err)
	}
	// The proxy's public URL is the aud; the address the request came to is not.
	for aud, ok := range map[string]bool{"https://fhir.example.org/auth/token": true, srv.URL + "/auth/token": false} {
		a, err := key.Assertion("app", aud, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().PostForm(srv.URL+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.read"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if (resp.StatusCode == http.StatusOK) != ok {
			t.Errorf("aud %s: %s", aud, resp.Status)
		}
	}
}
