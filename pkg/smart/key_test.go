package smart

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Keys are made once: RSA generation takes a while.
var (
	keysOnce                  sync.Once
	rsaKey, rsaKey2, rsaSmall *rsa.PrivateKey
	ecKey, ec256              *ecdsa.PrivateKey
)

func keys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		rsaSmall, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		ecKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		if err != nil {
			panic(err)
		}
	})
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// relabel gives a PEM file's block another type: a key in one format
// under another's label, as some tools write them.
func relabel(p []byte, typ string) []byte {
	b, _ := pem.Decode(p)
	return pemOf(typ, b.Bytes)
}

func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func sec1(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("EC PRIVATE KEY", der)
}

func jwkOf(t *testing.T, k any, kid, alg string) []byte {
	t.Helper()
	b, err := jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: alg}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksOf(t *testing.T, jwks ...[]byte) []byte {
	t.Helper()
	var raws []json.RawMessage
	for _, j := range jwks {
		raws = append(raws, j)
	}
	b, err := json.Marshal(map[string]any{"keys": raws})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func thumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// verify checks an assertion as a server would: signature by pub, header
// alg, kid and typ, and the claims.
func verify(t *testing.T, s string, pub crypto.PublicKey, alg, kid, clientID, aud string, now time.Time) jwt.Claims {
	t.Helper()
	tok, err := jwt.ParseSigned(s, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		t.Fatalf("parse assertion: %v", err)
	}
	h := tok.Headers[0]
	if h.Algorithm != alg || h.KeyID != kid || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header alg %q kid %q typ %v; want %s, %s, JWT", h.Algorithm, h.KeyID, h.ExtraHeaders["typ"], alg, kid)
	}
	if h.JSONWebKey != nil {
		t.Error("the header embeds a JWK")
	}
	var c jwt.Claims
	var raw map[string]any
	if err := tok.Claims(pub, &c, &raw); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: clientID, Subject: clientID, AnyAudience: jwt.Audience{aud}, Time: now}, 0); err != nil {
		t.Errorf("claims: %v", err)
	}
	if _, ok := raw["aud"].(string); !ok {
		t.Errorf("aud is %T, want a string", raw["aud"])
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		t.Fatal("no exp or iat")
	}
	if ahead := c.Expiry.Time().Sub(now); ahead > 5*time.Minute || ahead < time.Minute {
		t.Errorf("exp is %v ahead", ahead)
	}
	if !c.IssuedAt.Time().Equal(now.Truncate(time.Second)) {
		t.Errorf("iat %v, now %v", c.IssuedAt.Time(), now)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(c.ID) {
		t.Errorf("jti %q is not 128 bits of hex", c.ID)
	}
	return c
}

func TestLoadKeyFormats(t *testing.T) {
	keys(t)
	now := time.Now()
	const client, aud = "client-1", "https://auth.example/token"
	twoKeys := jwksOf(t, jwkOf(t, rsaKey, "r1", ""), jwkOf(t, ecKey, "e1", "ES384"), jwkOf(t, rsaKey2.Public(), "pub", ""))
	for _, tc := range []struct {
		name, file string
		data       []byte
		keyID      string
		pub        crypto.PublicKey
		alg, kid   string
	}{
		{"pkcs1", "k.pem", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "", rsaKey.Public(), "RS384", ""},
		{"pkcs1 with key id", "k.pem", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "mine", rsaKey.Public(), "RS384", "mine"},
		{"pkcs8 rsa", "k.pem", pkcs8(t, rsaKey), "", rsaKey.Public(), "RS384", ""},
		{"pkcs8 labelled pkcs1", "k.pem", relabel(pkcs8(t, rsaKey), "RSA PRIVATE KEY"), "", rsaKey.Public(), "RS384", ""},
		{"pkcs8 ec", "k.pem", pkcs8(t, ecKey), "", ecKey.Public(), "ES384", ""},
		{"sec1 with parameters", "k.pem", append(pemOf("EC PARAMETERS", []byte{6, 5, 43, 129, 4, 0, 34}), sec1(t, ecKey)...), "", ecKey.Public(), "ES384", ""},
		{"jwk rsa", "k.json", jwkOf(t, rsaKey, "jr", "RS384"), "", rsaKey.Public(), "RS384", "jr"},
		{"jwk ec no kid", "k.jwk", jwkOf(t, ecKey, "", ""), "given", ecKey.Public(), "ES384", "given"},
		{"jwks by kid rsa", "k.jwks", twoKeys, "r1", rsaKey.Public(), "RS384", "r1"},
		{"jwks by kid ec", "k.jwks", twoKeys, "e1", ecKey.Public(), "ES384", "e1"},
		{"jwks one private", "k.jwks", jwksOf(t, jwkOf(t, rsaKey2.Public(), "pub", ""), jwkOf(t, ecKey, "e1", "")), "", ecKey.Public(), "ES384", "e1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kid == "" {
				tc.kid = thumbprint(t, tc.pub)
			}
			k, err := LoadKey(writeFile(t, tc.file, tc.data), tc.keyID)
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg() != tc.alg || k.KeyID() != tc.kid {
				t.Errorf("alg %s kid %s; want %s %s", k.Alg(), k.KeyID(), tc.alg, tc.kid)
			}
			pub := k.Public()
			if pub.KeyID != tc.kid || pub.Algorithm != tc.alg || !pub.IsPublic() || pub.Use != "sig" {
				t.Errorf("Public() = kid %s alg %s public %v use %s", pub.KeyID, pub.Algorithm, pub.IsPublic(), pub.Use)
			}
			a1, err := k.Assertion(client, aud, now)
			if err != nil {
				t.Fatal(err)
			}
			a2, err := k.Assertion(client, aud, now)
			if err != nil {
				t.Fatal(err)
			}
			c1 := verify(t, a1, tc.pub, tc.alg, tc.kid, client, aud, now)
			c2 := verify(t, a2, pub.Key, tc.alg, tc.kid, client, aud, now)
			if c1.ID == c2.ID {
				t.Error("two assertions with one jti")
			}
		})
	}
}

// material is what a key file holds that must never be shown: every run
// of base64 (PEM bodies, JWK members) of 16 characters or more.
var material = regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}`)

func assertNoMaterial(t *testing.T, msg string, data []byte) {
	t.Helper()
	for _, m := range material.FindAllString(string(data), -1) {
		if strings.Contains(msg, m[:16]) {
			t.Errorf("error %q quotes the file's %q…", msg, m[:16])
		}
	}
}

func TestLoadKeyErrors(t *testing.T) {
	keys(t)
	cert := func() []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ecKey.Public(), ecKey)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("CERTIFICATE", der)
	}()
	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	huge := append([]byte(`{"keys":[`), make([]byte, MaxKeyFile)...)
	twoKeys := jwksOf(t, jwkOf(t, rsaKey, "r1", ""), jwkOf(t, ecKey, "e1", ""))
	dWithNumber := []byte(`{"kty":"RSA","n":"` + strings.Repeat("A", 40) + `","e":"AQAB","d":123456789012345678901234}`)
	for _, tc := range []struct {
		name, file string
		data       []byte
		keyID      string
		want       string
	}{
		{"empty", "key.pem", nil, "", "key.pem: empty file (PEM, JWK or JWKS expected)"},
		{"blank", "key.pem", []byte(" \n\t\n"), "", "key.pem: empty file (PEM, JWK or JWKS expected)"},
		{"garbage", "key.pem", []byte("MIIEowIBAAKCAQEA this is not a key at all"), "", "key.pem: no private key found (PEM, JWK or JWKS expected)"},
		{"bad pem body", "key.pem", []byte("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtotallybogus\n-----END RSA PRIVATE KEY-----\n"), "", "key.pem: the RSA PRIVATE KEY block does not parse as PKCS#8, PKCS#1 or SEC1"},
		{"bad der", "key.pem", pemOf("PRIVATE KEY", []byte("MIIEowIBAAKCAQEAtotallybogus")), "", "key.pem: the PRIVATE KEY block does not parse as PKCS#8, PKCS#1 or SEC1"},
		{"certificate", "cert.pem", cert, "", "cert.pem: a certificate, not a private key: give the private key it was made for"},
		{"public pem", "pub.pem", pemOf("PUBLIC KEY", pubDER), "", "pub.pem: a public key, not a private one: the client signs with its private key (the server has the public one)"},
		{"public jwk", "pub.json", jwkOf(t, rsaKey.Public(), "p", ""), "", "pub.json: a public JWK, not a private one: the client signs with its private key (the server has the public one)"},
		{"public jwks", "pub.jwks", jwksOf(t, jwkOf(t, rsaKey.Public(), "p", ""), jwkOf(t, ecKey.Public(), "q", "")), "", "pub.jwks: a JWKS of public keys only: the client signs with its private key (the server has the public ones)"},
		{"public jwks by kid", "pub.jwks", jwksOf(t, jwkOf(t, rsaKey.Public(), "p", ""), jwkOf(t, ecKey, "q", "")), "p", `pub.jwks: the JWKS's key "p" is a public key only: the client signs with its private key`},
		{"rsa 1024", "small.pem", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaSmall)), "", "small.pem: an RSA key of 1024 bits: SMART needs 2048 or more"},
		{"rsa 1024 jwk", "small.json", jwkOf(t, rsaSmall, "s", ""), "", `small.json: the JWK "s": an RSA key of 1024 bits: SMART needs 2048 or more`},
		{"ec p256", "ec.pem", sec1(t, ec256), "", "ec.pem: an EC key on P-256: ES384 needs a P-384 key (P-256 would sign ES256, which SMART does not list)"},
		{"two private pem", "two.pem", append(pkcs8(t, rsaKey), sec1(t, ecKey)...), "", "two.pem: 2 private keys in one PEM file: keep the one to sign with"},
		{"jwks two no kid", "k.jwks", twoKeys, "", `k.jwks: 2 private keys in the JWKS (kids: "r1", "e1"): choose one by its kid`},
		{"jwks kid not found", "k.jwks", twoKeys, "zz", `k.jwks: no private key with kid "zz" in the JWKS (kids: "r1", "e1")`},
		{"jwks empty", "k.jwks", []byte(`{"keys":[]}`), "", "k.jwks: a JWKS with no keys"},
		{"jwk alg mismatch", "k.json", jwkOf(t, rsaKey, "r1", "RS256"), "", `k.json: the JWK "r1": its alg is "RS256", but this key signs RS384 (SMART: RS384 or ES384)`},
		{"jwk alg mismatch ec", "k.json", jwkOf(t, ecKey, "", "ES256"), "", `k.json: the JWK: its alg is "ES256", but this key signs ES384 (SMART: RS384 or ES384)`},
		{"jwk kid differs", "k.json", jwkOf(t, rsaKey, "r1", ""), "other", `k.json: the JWK's kid is "r1", not "other"`},
		{"jwk oct", "k.json", []byte(`{"kty":"oct","k":"` + strings.Repeat("QUJD", 8) + `","d":"x"}`), "", `k.json: the JWK is of kty "oct": SMART signs with RSA (RS384) or EC P-384 (ES384)`},
		{"jwk ed", "k.json", []byte(`{"kty":"OKP","crv":"X448","x":"` + strings.Repeat("QUJD", 8) + `","d":"` + strings.Repeat("QUJD", 8) + `"}`), "", `k.json: the JWK is of kty "OKP": SMART signs with RSA (RS384) or EC P-384 (ES384)`},
		{"jwk broken", "k.json", []byte(`{"kty":"RSA","n":"` + strings.Repeat("QUJD", 8) + `","e":"AQAB","d":"` + strings.Repeat("QUJD", 8) + `"}`), "", "k.json: the JWK does not parse: invalid RSA private key, missing P, Q value(s)"},
		{"jwk number d", "k.json", dWithNumber, "", `k.json: the JWK: "d" is not a string`},
		{"bad json", "k.json", []byte(`{"kty": "RSA", "d": QUJDQUJDQUJDQUJDQUJDQUJD}`), "", "k.json: not valid JSON (at byte 21)"},
		{"json not a key", "k.json", []byte(`{"hello":"world"}`), "", `k.json: JSON, but neither a JWK (no "kty") nor a JWKS (no "keys")`},
		{"huge", "big.jwks", huge, "", "big.jwks: over 1 MiB, too large for a key file (PEM, JWK or JWKS expected)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, tc.file)
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			_, err := LoadKey(tc.file, tc.keyID)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			assertNoMaterial(t, err.Error(), tc.data)
		})
	}
	if _, err := LoadKey(filepath.Join(t.TempDir(), "none.pem"), ""); err == nil || !strings.HasSuffix(err.Error(), "none.pem: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
}

func TestKeyPrintsNoSecret(t *testing.T) {
	keys(t)
	k, err := LoadKey(writeFile(t, "k.json", jwkOf(t, rsaKey, "r1", "")), "")
	if err != nil {
		t.Fatal(err)
	}
	d := base64.RawURLEncoding.EncodeToString(rsaKey.D.Bytes())[:16]
	dDec := rsaKey.D.String()[:16]
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", *k), fmt.Sprintf("%+v", *k), fmt.Sprintf("%#v", *k), fmt.Sprintf("%v", []*Key{k}), fmt.Sprintf("%+v", struct{ K Key }{*k})} {
		if strings.Contains(s, d) || strings.Contains(s, dDec) {
			t.Errorf("printed a key: %s", s)
		}
		if !strings.Contains(s, `smart.Key{alg: RS384, kid: "r1"}`) {
			t.Errorf("printed %s", s)
		}
	}
}
