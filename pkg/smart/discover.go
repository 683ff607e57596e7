package smart

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// WellKnown is the path, under a FHIR base URL, of its SMART configuration.
const WellKnown = "/.well-known/smart-configuration"

// Config is what Discover reads of a server's SMART configuration.
type Config struct {
	// TokenEndpoint is token_endpoint: an absolute http(s) URL.
	TokenEndpoint string
	// AuthMethods is token_endpoint_auth_methods_supported; a server
	// for backend services lists "private_key_jwt".
	AuthMethods []string
	// GrantTypes is grant_types_supported ("client_credentials").
	GrantTypes []string
	// Scopes is scopes_supported.
	Scopes []string
	// SigningAlgs is token_endpoint_auth_signing_alg_values_supported
	// (RS384, ES384).
	SigningAlgs []string
}

type wellKnown struct {
	TokenEndpoint *string  `json:"token_endpoint"`
	AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypes    []string `json:"grant_types_supported"`
	Scopes        []string `json:"scopes_supported"`
	SigningAlgs   []string `json:"token_endpoint_auth_signing_alg_values_supported"`
}

// Discover reads base + WellKnown (GET, Accept: application/json; a
// trailing slash of base, its query and fragment are dropped) and returns
// its token endpoint and what the server supports. client nil is
// http.DefaultClient; a 429 or 503 is retried, honouring Retry-After.
// Errors are one line and name the URL redacted (no user info or query):
// a 404 or 410 says the server has no SMART configuration and that a
// token URL must be given (--token-url).
func Discover(ctx context.Context, client *http.Client, base string) (Config, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Config{}, fmt.Errorf("%s is not an http(s) URL", source.Redact(base))
	}
	shownBase := source.Redact(u.String())
	u.Path = strings.TrimRight(u.Path, "/") + WellKnown
	u.RawPath, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", "", false, "", ""
	where := source.Redact(u.String())
	resp, err := doRetry(ctx, client, nil, 0, where, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", where, source.RedactText(oneLine(err.Error(), 200)))
		}
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	if err != nil {
		return Config{}, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return Config{}, fmt.Errorf("%s has no %s (HTTP %d): give --token-url", shownBase, strings.TrimPrefix(WellKnown, "/"), resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return Config{}, fmt.Errorf("%s answered HTTP %d (%s)", where, resp.StatusCode, mediaType(resp))
	}
	body, err := readBounded(resp, where, "a SMART configuration")
	if err != nil {
		return Config{}, err
	}
	var w wellKnown
	if err := json.Unmarshal(body, &w); err != nil {
		return Config{}, fmt.Errorf("%s answered %s, not a SMART configuration: %s", where, mediaType(resp), jsonError("", err))
	}
	if w.TokenEndpoint == nil || strings.TrimSpace(*w.TokenEndpoint) == "" {
		return Config{}, fmt.Errorf("%s has no token_endpoint: give --token-url", where)
	}
	te := strings.TrimSpace(*w.TokenEndpoint)
	tu, err := url.Parse(te)
	if err != nil || (tu.Scheme != "https" && tu.Scheme != "http") || tu.Host == "" {
		return Config{}, fmt.Errorf("%s: token_endpoint %s is not an absolute http(s) URL", where, quote(source.Redact(te)))
	}
	return Config{TokenEndpoint: te, AuthMethods: w.AuthMethods, GrantTypes: w.GrantTypes, Scopes: w.Scopes, SigningAlgs: w.SigningAlgs}, nil
}
