package smart

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxKeyFile bounds a key file: a JWKS of a few keys is a few KiB.
const MaxKeyFile = 1 << 20

// AssertionLifetime is how far ahead of now an assertion expires. SMART
// asks for no more than five minutes; four leave a server whose clock is a
// minute behind ours room to accept it.
const AssertionLifetime = 4 * time.Minute

// minRSABits is the smallest RSA key SMART (and NIST) accept.
const minRSABits = 2048

// Key is a client's private key, ready to sign assertions: an RSA key
// (RS384) or an EC P-384 key (ES384), with the kid that goes in the JWT
// header. Its String and GoString show the algorithm and kid only.
type Key struct {
	priv   crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey
	alg    jose.SignatureAlgorithm
	kid    string
	signer jose.Signer
}

// Alg is the JWS algorithm the key signs with: "RS384" or "ES384".
func (k *Key) Alg() string { return string(k.alg) }

// KeyID is the kid of the assertions' header (see LoadKey for where it
// comes from).
func (k *Key) KeyID() string { return k.kid }

// Public is the public half as a JWK, with kid, alg and use "sig": what
// the server registers (in the client's JWKS) to verify the assertions.
func (k *Key) Public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// String shows the algorithm and kid, never the key.
func (k Key) String() string { return fmt.Sprintf("smart.Key{alg: %s, kid: %q}", k.alg, k.kid) }

// GoString is String: %#v shows no key either.
func (k Key) GoString() string { return k.String() }

// LoadKey reads the client's private key from path, which holds one of:
//
//   - PEM: a PKCS#1 "RSA PRIVATE KEY", a PKCS#8 "PRIVATE KEY" (RSA or EC)
//     or a SEC1 "EC PRIVATE KEY" block (an "EC PARAMETERS" block beside it,
//     as openssl writes, is skipped); one private key in the file;
//   - a JWK: a JSON object with the private parts ("d" and, for RSA, the
//     primes);
//   - a JWKS, {"keys": [...]}: its public-only keys are skipped; of several
//     private keys keyID picks the one whose kid it is (without keyID the
//     error lists the kids).
//
// An RSA key of at least 2048 bits signs RS384, an EC key on P-384 ES384;
// other keys are refused, as is a JWK whose "alg" is another algorithm
// than the one its key would sign with. The kid of the assertions is the
// JWK's kid, else keyID, else the RFC 7638 thumbprint of the public key
// (SHA-256, base64url without padding): the server finds the key to check
// an assertion by this kid in the client's registered JWKS, so it must be
// the kid registered there. A single JWK whose kid is not keyID is refused.
//
// Errors start with path and never quote the file's content or any key
// material.
func LoadKey(path, keyID string) (*Key, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := parseKey(data, keyID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFile+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxKeyFile {
		return nil, fmt.Errorf("%s: over %d MiB, too large for a key file (PEM, JWK or JWKS expected)", path, MaxKeyFile>>20)
	}
	return data, nil
}

var errNoKey = errors.New("no private key found (PEM, JWK or JWKS expected)")

func parseKey(data []byte, keyID string) (*Key, error) {
	t := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	switch {
	case len(t) == 0:
		return nil, errors.New("empty file (PEM, JWK or JWKS expected)")
	case t[0] == '{':
		return parseJSONKey(t, keyID)
	case bytes.Contains(t, []byte("-----BEGIN ")):
		return parsePEMKey(t, keyID)
	}
	return nil, errNoKey
}

// parsePEMKey reads the PEM blocks of a file and wants exactly one private
// key among them. The block's label is a hint, not trusted: a PKCS#8 key
// labelled "RSA PRIVATE KEY" is common enough, so each private block is
// tried as PKCS#8, PKCS#1 and SEC1.
func parsePEMKey(data []byte, keyID string) (*Key, error) {
	var (
		privs                []crypto.PrivateKey
		public, cert, blocks int
	)
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks++
		switch b.Type {
		case "RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY":
			if _, ok := b.Headers["DEK-Info"]; ok {
				return nil, fmt.Errorf("the %s is encrypted: decrypt it first (openssl pkey -in FILE -out PLAIN.pem)", b.Type)
			}
			p, err := parsePrivateDER(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the %s block does not parse as PKCS#8, PKCS#1 or SEC1", b.Type)
			}
			privs = append(privs, p)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted: decrypt it first (openssl pkey -in FILE -out PLAIN.pem)")
		case "PUBLIC KEY", "RSA PUBLIC KEY":
			public++
		case "CERTIFICATE":
			cert++
		}
	}
	switch {
	case len(privs) == 1:
		return newKey(privs[0], "", keyID)
	case len(privs) > 1:
		return nil, fmt.Errorf("%d private keys in one PEM file: keep the one to sign with", len(privs))
	case public > 0:
		return nil, errors.New("a public key, not a private one: the client signs with its private key (the server has the public one)")
	case cert > 0:
		return nil, errors.New("a certificate, not a private key: give the private key it was made for")
	case blocks > 0:
		return nil, errors.New("no private key among its PEM blocks (PEM, JWK or JWKS expected)")
	}
	return nil, errNoKey
}

func parsePrivateDER(der []byte) (crypto.PrivateKey, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return x509.ParseECPrivateKey(der)
}

// rawJWK is the part of a JWK read before go-jose parses it: all strings,
// so that a value of the wrong type is told by its field name (a JSON type
// error would quote a number's digits).
type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	D   string `json:"d"`
}

func parseJSONKey(data []byte, keyID string) (*Key, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonError("", err)
	}
	if keys, ok := top["keys"]; ok {
		var list []json.RawMessage
		if err := json.Unmarshal(keys, &list); err != nil {
			return nil, errors.New(`a JWKS whose "keys" is not an array`)
		}
		return pickJWKS(list, keyID)
	}
	if _, ok := top["kty"]; !ok {
		return nil, errors.New(`JSON, but neither a JWK (no "kty") nor a JWKS (no "keys")`)
	}
	var r rawJWK
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, jsonError("the JWK", err)
	}
	if r.D == "" {
		return nil, errors.New("a public JWK, not a private one: the client signs with its private key (the server has the public one)")
	}
	if keyID != "" && r.Kid != "" && r.Kid != keyID {
		return nil, fmt.Errorf("the JWK's kid is %s, not %s", quote(r.Kid), quote(keyID))
	}
	return jwkKey(data, r, keyID)
}

// pickJWKS chooses the private key of a JWKS: by keyID, or the only one.
func pickJWKS(list []json.RawMessage, keyID string) (*Key, error) {
	type entry struct {
		raw json.RawMessage
		r   rawJWK
	}
	var privs []entry
	var kids []string
	publicWithID := false
	for i, raw := range list {
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, jsonError(fmt.Sprintf("key %d of the JWKS", i+1), err)
		}
		if r.D == "" {
			if keyID != "" && r.Kid == keyID {
				publicWithID = true
			}
			continue
		}
		privs = append(privs, entry{raw, r})
		kids = append(kids, quote(r.Kid))
	}
	if keyID != "" {
		var match []entry
		for _, e := range privs {
			if e.r.Kid == keyID {
				match = append(match, e)
			}
		}
		switch {
		case len(match) == 1:
			return jwkKey(match[0].raw, match[0].r, keyID)
		case len(match) > 1:
			return nil, fmt.Errorf("%d private keys with kid %s in the JWKS", len(match), quote(keyID))
		case publicWithID:
			return nil, fmt.Errorf("the JWKS's key %s is a public key only: the client signs with its private key", quote(keyID))
		case len(privs) == 0:
			return nil, fmt.Errorf("no private key with kid %s: the JWKS has public keys only", quote(keyID))
		}
		return nil, &kidError{fmt.Sprintf("no private key with kid %s in the JWKS (kids: %s)", quote(keyID), strings.Join(kids, ", "))}
	}
	switch len(privs) {
	case 0:
		if len(list) == 0 {
			return nil, errors.New("a JWKS with no keys")
		}
		return nil, errors.New("a JWKS of public keys only: the client signs with its private key (the server has the public ones)")
	case 1:
		return jwkKey(privs[0].raw, privs[0].r, "")
	}
	return nil, &kidError{fmt.Sprintf("%d private keys in the JWKS (kids: %s): choose one by its kid", len(privs), strings.Join(kids, ", "))}
}

// ErrKeyID is wrapped by LoadKey's error when the key id does not pick one
// private key of a JWKS: none given among several, or none of that kid.
var ErrKeyID = errors.New("the key id picks no single key")

type kidError struct{ msg string }

func (e *kidError) Error() string { return e.msg }
func (e *kidError) Unwrap() error { return ErrKeyID }

// jwkKey parses one private JWK with go-jose, whose errors name fields and
// never their values.
func jwkKey(data []byte, r rawJWK, keyID string) (*Key, error) {
	what := "the JWK"
	if r.Kid != "" {
		what = "the JWK " + quote(r.Kid)
	}
	if r.Kty != "RSA" && r.Kty != "EC" {
		return nil, fmt.Errorf("%s is of kty %s: SMART signs with RSA (RS384) or EC P-384 (ES384)", what, quote(r.Kty))
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("%s does not parse: %s", what, oneLine(strings.TrimPrefix(err.Error(), "go-jose/go-jose: "), 200))
	}
	kid := r.Kid
	if kid == "" {
		kid = keyID
	}
	k, err := newKey(jwk.Key, r.Alg, kid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return k, nil
}

// newKey checks that priv is a key SMART signs with and makes its signer;
// jwkAlg is the "alg" of a JWK ("" for none), kid the kid chosen so far
// ("" for the thumbprint).
func newKey(priv crypto.PrivateKey, jwkAlg, kid string) (*Key, error) {
	var (
		alg    jose.SignatureAlgorithm
		signer crypto.Signer
	)
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		if bits := p.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("an RSA key of %d bits: SMART needs %d or more", bits, minRSABits)
		}
		alg, signer = jose.RS384, p
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P384() {
			return nil, fmt.Errorf("an EC key on %s: ES384 needs a P-384 key (%s would sign %s, which SMART does not list)", curveName(p.Curve), curveName(p.Curve), curveAlg(p.Curve))
		}
		alg, signer = jose.ES384, p
	case ed25519.PrivateKey, *ed25519.PrivateKey:
		return nil, errors.New("an Ed25519 key: SMART signs with RSA (RS384) or EC P-384 (ES384)")
	default:
		return nil, fmt.Errorf("a %T key: SMART signs with RSA (RS384) or EC P-384 (ES384)", priv)
	}
	if jwkAlg != "" && jwkAlg != string(alg) {
		return nil, fmt.Errorf("its alg is %s, but this key signs %s (SMART: RS384 or ES384)", quote(jwkAlg), alg)
	}
	if kid == "" {
		tp, err := (&jose.JSONWebKey{Key: signer.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("no thumbprint for the kid: %s", strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: signer, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("no %s signer: %s", alg, strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
	}
	return &Key{priv: signer, alg: alg, kid: kid, signer: s}, nil
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil {
		return "an unknown curve"
	}
	return c.Params().Name
}

func curveAlg(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "ES256"
	case elliptic.P521():
		return "ES512"
	}
	return "another algorithm"
}

// jsonError says where JSON went wrong without quoting it: encoding/json's
// messages quote a character, or a number's digits.
func jsonError(what string, err error) error {
	prefix := ""
	if what != "" {
		prefix = what + ": "
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%snot valid JSON (at byte %d)", prefix, se.Offset)
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf("%s%q is not a %s", prefix, te.Field, te.Type)
	case errors.As(err, &te):
		return fmt.Errorf("%snot a JSON object", prefix)
	}
	return fmt.Errorf("%snot valid JSON", prefix)
}

// quote shows a name from a file or a server (a kid, an alg) quoted, on
// one line and short.
func quote(s string) string { return strconv.Quote(oneLine(s, 80)) }

// Assertion is a fresh client assertion for clientID at the token
// endpoint tokenURL: a compact JWS, header alg, kid and typ "JWT"; claims
// iss = sub = clientID, aud = tokenURL, iat = now, exp = now +
// AssertionLifetime, jti = 128 random bits in hex (a server refuses a jti
// it has seen, so each request needs a new assertion).
func (k *Key) Assertion(clientID, tokenURL string, now time.Time) (string, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("assertion: %w", err)
	}
	c := jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{tokenURL},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(AssertionLifetime)),
		ID:       hex.EncodeToString(id[:]),
	}
	s, err := jwt.Signed(k.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("assertion: signing %s: %s", k.alg, strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
	}
	return s, nil
}
