package bulkimport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/fhirbulk/fhirbulk/pkg/bulkclient"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/smart"
)

// maxTokenFile bounds a bearer token file.
const maxTokenFile = 64 << 10

// OpenAuth opens the way to authenticate that a records names: a SMART
// Backend Services client (its key read, its token endpoint found at
// base's .well-known/smart-configuration unless given), or a static
// bearer token read from its file. It is PullOptions.Auth.
func OpenAuth(transport http.RoundTripper) func(ctx context.Context, a PullAuth, base string) (bulkclient.Auth, error) {
	return func(ctx context.Context, a PullAuth, base string) (bulkclient.Auth, error) {
		if a.BearerFile != "" {
			tok, err := ReadToken(a.BearerFile)
			if err != nil {
				return nil, err
			}
			return bulkclient.StaticToken(tok), nil
		}
		if a.PrivateKey == "" {
			return nil, nil
		}
		key, err := OpenKey(a)
		if err != nil {
			return nil, err
		}
		client := &http.Client{Transport: transport}
		tokenURL := a.TokenURL
		if tokenURL == "" {
			cfg, err := smart.Discover(ctx, client, base)
			if err != nil {
				return nil, &AuthError{Flag: "token-url", Err: err}
			}
			tokenURL = cfg.TokenEndpoint
		}
		// The token request follows no redirect: a 307 would send the
		// assertion on to whatever host it names.
		tokenClient := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		ts := &smart.TokenSource{Client: tokenClient, TokenURL: tokenURL, ClientID: a.ClientID, Scope: a.Scope, Key: key}
		// The first token now: a refused client is one line before the
		// kick-off, not a failed export.
		if _, err := ts.Token(ctx); err != nil {
			return nil, &AuthError{Err: err}
		}
		return bulkclient.Bearer(ts), nil
	}
}

// AuthError is a pull that cannot authenticate: its key, its token
// endpoint, or the server's refusal. Flag names the setting at fault,
// when one is.
type AuthError struct {
	Flag string // "private-key", "token-url", "bearer-token-file"; "" for the server's refusal
	Err  error
}

func (e *AuthError) Error() string { return e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// ReadToken reads a bearer token file: one token, spaces and line ends
// around it ignored; anything that would not fit in a header is refused.
func ReadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &AuthError{Flag: "bearer-token-file", Err: fsutil.FileError("token file", path, err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", &AuthError{Flag: "bearer-token-file", Err: fsutil.FileError("token file", path, err)}
	}
	tok := bytes.TrimSpace(data)
	switch {
	case len(data) > maxTokenFile:
		return "", &AuthError{Flag: "bearer-token-file", Err: fmt.Errorf("%s: over %d KiB, not a token", path, maxTokenFile>>10)}
	case len(tok) == 0:
		return "", &AuthError{Flag: "bearer-token-file", Err: fmt.Errorf("%s: empty", path)}
	case bytes.ContainsFunc(tok, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return "", &AuthError{Flag: "bearer-token-file", Err: fmt.Errorf("%s: not one token (spaces, line breaks or other characters a header cannot carry)", path)}
	}
	return string(tok), nil
}

// OpenKey reads the private key a names.
func OpenKey(a PullAuth) (*smart.Key, error) {
	key, err := smart.LoadKey(a.PrivateKey, a.KeyID)
	if errors.Is(err, smart.ErrKeyID) {
		return nil, &AuthError{Flag: "key-id", Err: err}
	}
	if err != nil {
		return nil, &AuthError{Flag: "private-key", Err: err}
	}
	return key, nil
}
