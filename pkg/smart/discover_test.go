package smart

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestDiscover(t *testing.T) {
	var hits int
	mux := http.NewServeMux()
	handle := func(path, ctype string, status int, body string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			hits++
			if r.Method != http.MethodGet || r.Header.Get("Accept") != "application/json" {
				t.Errorf("%s with Accept %q", r.Method, r.Header.Get("Accept"))
			}
			if r.URL.RawQuery != "" {
				t.Errorf("query %q sent", r.URL.RawQuery)
			}
			if ctype != "" {
				w.Header().Set("Content-Type", ctype)
			}
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		})
	}
	handle("/good/fhir/.well-known/smart-configuration", "application/json", 200, `{
		"token_endpoint": "https://auth.example/token",
		"token_endpoint_auth_methods_supported": ["private_key_jwt"],
		"token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
		"grant_types_supported": ["client_credentials"],
		"scopes_supported": ["system/*.read", "system/*.rs"],
		"capabilities": ["client-confidential-asymmetric"]}`)
	handle("/html/.well-known/smart-configuration", "text/html", 200, "<html>hello</html>")
	handle("/none/.well-known/smart-configuration", "application/json", 200, `{"grant_types_supported":["client_credentials"]}`)
	handle("/ftp/.well-known/smart-configuration", "application/json", 200, `{"token_endpoint":"ftp://user:pw@auth.example/token?k=v"}`)
	handle("/relative/.well-known/smart-configuration", "application/json", 200, `{"token_endpoint":"/token"}`)
	handle("/types/.well-known/smart-configuration", "application/json", 200, `{"token_endpoint":"https://a/t","scopes_supported":"system/*.read"}`)
	handle("/fail/.well-known/smart-configuration", "text/plain", 500, "boom")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	for _, base := range []string{srv.URL + "/good/fhir", srv.URL + "/good/fhir/", srv.URL + "/good/fhir?_format=json"} {
		cfg, err := Discover(ctx, srv.Client(), base)
		if err != nil {
			t.Fatal(err)
		}
		want := Config{
			TokenEndpoint: "https://auth.example/token",
			AuthMethods:   []string{"private_key_jwt"},
			GrantTypes:    []string{"client_credentials"},
			Scopes:        []string{"system/*.read", "system/*.rs"},
			SigningAlgs:   []string{"RS384", "ES384"},
		}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("Discover(%s) = %+v", base, cfg)
		}
	}

	for _, tc := range []struct{ base, want string }{
		{"/missing", "%s/missing has no .well-known/smart-configuration (HTTP 404): give --token-url"},
		{"/html", "%s/html/.well-known/smart-configuration answered text/html, not a SMART configuration: not valid JSON (at byte 1)"},
		{"/none", "%s/none/.well-known/smart-configuration has no token_endpoint: give --token-url"},
		{"/ftp", `%s/ftp/.well-known/smart-configuration: token_endpoint "ftp://auth.example/token?…" is not an absolute http(s) URL`},
		{"/relative", `%s/relative/.well-known/smart-configuration: token_endpoint "/token" is not an absolute http(s) URL`},
		{"/types", `%s/types/.well-known/smart-configuration answered application/json, not a SMART configuration: "scopes_supported" is not a []string`},
		{"/fail", "%s/fail/.well-known/smart-configuration answered HTTP 500 (text/plain)"},
	} {
		_, err := Discover(ctx, srv.Client(), srv.URL+tc.base)
		if want := fmt.Sprintf(tc.want, srv.URL); err == nil || err.Error() != want {
			t.Errorf("Discover(%s):\n got %v\nwant %s", tc.base, err, want)
		}
	}

	// The base's user info and query are not shown.
	u := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/missing?sig=s3cret"
	_, err := Discover(ctx, srv.Client(), u)
	if want := srv.URL + "/missing?… has no .well-known/smart-configuration (HTTP 404): give --token-url"; err == nil || err.Error() != want {
		t.Errorf("redacted base:\n got %v\nwant %s", err, want)
	}
	if _, err := Discover(ctx, nil, "ftp://x/y"); err == nil || err.Error() != "ftp://x/y is not an http(s) URL" {
		t.Errorf("ftp base: %v", err)
	}
	if hits == 0 {
		t.Error("no requests")
	}
}
