package smart

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// What the token endpoint of the $export server accepts: the assertions
// our own client makes (RS384 with a kid, ES384, a thumbprint kid), and
// nothing else.
func TestVerify(t *testing.T) {
	keys(t)
	rsa, err := newKey(rsaKey, "", "r1")
	if err != nil {
		t.Fatal(err)
	}
	ec, err := newKey(ecKey, "", "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := newKey(rsaKey2, "", "r1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	url := "https://fhir.example/auth/token"
	v := &Verifier{Now: func() time.Time { return now }, Clients: map[string]Client{
		"app": {ID: "app", Scope: "system/*.read system/*.rs", JWKS: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{rsa.Public(), ec.Public()}}},
	}}
	for name, k := range map[string]*Key{"RS384 with kid": rsa, "ES384 by thumbprint": ec} {
		a, err := k.Assertion("app", url, now)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := v.Verify(context.Background(), a, url); err != nil || c.ID != "app" {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := v.Verify(context.Background(), a, url); err == nil || !strings.Contains(err.Error(), "jti replayed") {
			t.Errorf("%s replayed: %v", name, err)
		}
	}
	pub := ec.Public()
	if sum, _ := pub.Thumbprint(crypto.SHA256); ec.KeyID() != base64.RawURLEncoding.EncodeToString(sum) {
		t.Errorf("ec kid %s is not its thumbprint", ec.KeyID())
	}

	sign := func(k *Key, c jwt.Claims) string {
		s, err := jwt.Signed(k.signer).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := func() jwt.Claims {
		return jwt.Claims{Issuer: "app", Subject: "app", Audience: jwt.Audience{url}, Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: time.Now().String()}
	}
	cases := map[string]struct {
		assertion string
		want      string
	}{
		"wrong key": {sign(other, good()), "the signature does not match the key \"r1\" of client app"},
		"unknown":   {func() string { c := good(); c.Issuer, c.Subject = "x", "x"; return sign(rsa, c) }(), "no client \"x\" is registered"},
		"sub":       {func() string { c := good(); c.Subject = "y"; return sign(rsa, c) }(), "sub is not the client id"},
		"aud":       {func() string { c := good(); c.Audience = jwt.Audience{"https://other/token"}; return sign(rsa, c) }(), "aud is not the token URL"},
		"two auds":  {func() string { c := good(); c.Audience = jwt.Audience{url, "x"}; return sign(rsa, c) }(), "aud is not the token URL"},
		"expired":   {func() string { c := good(); c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)); return sign(rsa, c) }(), "exp is past"},
		"far": {func() string {
			c := good()
			c.Expiry = jwt.NewNumericDate(now.Add(10 * time.Minute))
			return sign(rsa, c)
		}(), "exp is more than 5 minutes ahead"},
		"no exp":   {func() string { c := good(); c.Expiry = nil; return sign(rsa, c) }(), "no exp"},
		"no jti":   {func() string { c := good(); c.ID = ""; return sign(rsa, c) }(), "no jti"},
		"garbage":  {"not.a.jwt", "not a JWT signed RS384 or ES384"},
		"unsigned": {"eyJhbGciOiJub25lIn0.eyJpc3MiOiJhcHAifQ.", "not a JWT signed RS384 or ES384"},
	}
	for name, tc := range cases {
		_, err := v.Verify(context.Background(), tc.assertion, url)
		var oe *OAuthError
		if !errors.As(err, &oe) || oe.Code != "invalid_client" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && tc.assertion != "" && len(tc.assertion) > 20 && strings.Contains(err.Error(), tc.assertion[:20]) {
			t.Errorf("%s: the error quotes the assertion", name)
		}
	}
	// An HS256 assertion keyed with the public key's bytes is no RS384.
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithHeader("kid", "r1"))
	a, _ := jwt.Signed(hs).Claims(good()).Serialize()
	if _, err := v.Verify(context.Background(), a, url); err == nil {
		t.Error("HS256 taken")
	}
	// A jti is forgotten once its assertion could not be used any more.
	c := good()
	c.ID = "once"
	a = sign(rsa, c)
	if _, err := v.Verify(context.Background(), a, url); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Minute)
	v.Verify(context.Background(), sign(rsa, good()), url)
	v.mu.Lock()
	_, kept := v.seen["app\x00once"]
	v.mu.Unlock()
	if kept {
		t.Error("an expired jti is still remembered")
	}
}

func TestVerifyConcurrentReplay(t *testing.T) {
	keys(t)
	rsa, _ := newKey(rsaKey, "", "r1")
	now := time.Now()
	v := &Verifier{Clients: map[string]Client{"app": {ID: "app", JWKS: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{rsa.Public()}}}}}
	a, _ := rsa.Assertion("app", "u", now)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), a, "u"); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Errorf("one assertion taken %d times", ok)
	}
}

func TestGrantScope(t *testing.T) {
	c := Client{ID: "app", Scope: "system/*.read system/Patient.rs"}
	for asked, want := range map[string]string{
		"system/*.read":                     "system/*.read",
		"system/*.read system/*.write":      "system/*.read",
		"system/Patient.rs  system/*.read ": "system/Patient.rs system/*.read",
		"system/*.write":                    "",
		"":                                  "",
	} {
		got, err := GrantScope(c, asked)
		var oe *OAuthError
		switch {
		case want == "" && (!errors.As(err, &oe) || oe.Code != "invalid_scope"):
			t.Errorf("%q: %v", asked, err)
		case want != "" && got != want:
			t.Errorf("%q: %q, want %q", asked, got, want)
		}
	}
}

func TestReadable(t *testing.T) {
	for _, c := range []struct {
		scope string
		all   bool
		types string
	}{
		{"system/*.read", true, ""},
		{"system/*.rs", true, ""},
		{"system/*.r", true, ""},
		{"system/*.*", true, ""},
		{"system/Patient.read system/Observation.rs", false, "Patient,Observation"},
		{"system/Patient.cruds", false, "Patient"},
		{"system/Patient.write system/Patient.c system/Patient.sr", false, ""},
		{"patient/*.read user/*.read", false, ""},
		{"system/Observation.rs?category=laboratory", false, ""},
		{"system/.read system/*", false, ""},
		{"", false, ""},
	} {
		all, types := Readable(c.scope)
		if all != c.all || strings.Join(types, ",") != c.types {
			t.Errorf("Readable(%q) = %v %q, want %v %q", c.scope, all, strings.Join(types, ","), c.all, c.types)
		}
	}
}

// A key host that does not answer delays its own client only: another
// client's jwksUrl is fetched, and its assertion checked, meanwhile.
func TestJWKSFetchPerURL(t *testing.T) {
	keys(t)
	rsa, err := newKey(rsaKey, "", "r1")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{rsa.Public()}})
	}))
	defer slow.Close()
	defer close(release)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{rsa.Public()}})
	}))
	defer fast.Close()
	url := "https://fhir.example/auth/token"
	v := &Verifier{Clients: map[string]Client{
		"slow": {ID: "slow", Scope: "system/*.read", JWKSURL: slow.URL},
		"fast": {ID: "fast", Scope: "system/*.read", JWKSURL: fast.URL},
	}}
	slowDone := make(chan error, 1)
	go func() {
		a, _ := rsa.Assertion("slow", url, time.Now())
		_, err := v.Verify(context.Background(), a, url)
		slowDone <- err
	}()
	a, _ := rsa.Assertion("fast", url, time.Now())
	if _, err := v.Verify(context.Background(), a, url); err != nil {
		t.Fatalf("fast client while the slow key host holds: %v", err)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow client ended first: %v", err)
	default:
	}
	release <- struct{}{}
	if err := <-slowDone; err != nil {
		t.Errorf("slow client: %v", err)
	}
}
