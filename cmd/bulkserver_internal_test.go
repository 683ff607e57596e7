package cmd

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// lockedBuffer is a log the test reads while the server writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testBulk is a Bulk Data test server on two httptest listeners.
type testBulk struct {
	t      *testing.T
	s      *bulkServer
	keys   *bulkKeys
	log    *lockedBuffer
	tokens *lockedBuffer
}

func newTestBulk(t *testing.T, auth string) *testBulk {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Patient.ndjson", `{"resourceType":"Patient","id":"1"}`+"\n"+`{"resourceType":"Patient","id":"2"}`+"\n")
	write("Observation.2.ndjson", `{"resourceType":"Observation","id":"o1"}`+"\n")
	write("deleted/del.ndjson", `{"resourceType":"Bundle","type":"transaction"}`+"\n")
	write("error/err.ndjson", `{"resourceType":"OperationOutcome"}`+"\n")
	write("notes.txt", "not an export file\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, `{"resourceType":"Condition","id":"c1"}`+"\n"+`{"resourceType":"Condition","id":"c2"}`+"\n"+`{"resourceType":"Condition","id":"c3"}`+"\n")
	zw.Close()
	write("Condition.ndjson.gz", gz.String())
	keys, err := newBulkKeys()
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBulk{t: t, keys: keys, log: &lockedBuffer{}, tokens: &lockedBuffer{}}
	tb.s, err = newBulkServer(bulkConfig{dir: dir, auth: auth, keys: keys.registered(), log: tb.log, tokens: tb.tokens})
	if err != nil {
		t.Fatal(err)
	}
	main := httptest.NewUnstartedServer(tb.s)
	files := httptest.NewUnstartedServer(tb.s.presignedHandler())
	tb.s.base = "http://" + main.Listener.Addr().String()
	tb.s.filesBase = "http://" + files.Listener.Addr().String()
	main.Start()
	files.Start()
	t.Cleanup(func() {
		tb.s.shutdown()
		main.Close()
		files.Close()
	})
	return tb
}

// assertion signs claims as the test client would, with key (a private
// JWK whose KeyID goes in the header).
func (tb *testBulk) assertion(alg jose.SignatureAlgorithm, key jose.JSONWebKey, claims jwt.Claims) string {
	tb.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		tb.t.Fatal(err)
	}
	return s
}

func (tb *testBulk) claims(jti string) jwt.Claims {
	return jwt.Claims{
		Issuer:   bulkClientID,
		Subject:  bulkClientID,
		Audience: jwt.Audience{tb.s.base + "/auth/token"},
		Expiry:   jwt.NewNumericDate(time.Now().Add(4 * time.Minute)),
		ID:       jti,
	}
}

// tokenRequest posts an assertion to the token endpoint: the status and
// the decoded answer.
func (tb *testBulk) tokenRequest(assertion string) (int, map[string]any) {
	tb.t.Helper()
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {"system/*.read"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	resp, err := http.PostForm(tb.s.base+"/auth/token", form)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.t.Fatal(err)
	}
	return resp.StatusCode, body
}

func (tb *testBulk) token(jti string) string {
	tb.t.Helper()
	rsa1, _, _ := tb.keys.private()
	code, body := tb.tokenRequest(tb.assertion(jose.RS384, rsa1, tb.claims(jti)))
	if code != http.StatusOK {
		tb.t.Fatalf("token: %d %v", code, body)
	}
	return body["access_token"].(string)
}

// do sends a request with a bearer token (none when "") and returns the
// response with its body read.
func (tb *testBulk) do(method, u, token string, header map[string]string, body string) (*http.Response, string) {
	tb.t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		tb.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
	if err != nil {
		tb.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.t.Fatal(err)
	}
	return resp, string(data)
}

var bulkKickoffHeaders = map[string]string{"Prefer": "respond-async", "Accept": "application/fhir+json"}

func wantStatus(t *testing.T, what string, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s: %d %s, want %d", what, resp.StatusCode, body, code)
	}
}

func TestBulkServerSMART(t *testing.T) {
	tb := newTestBulk(t, "smart")
	base := tb.s.base + "/fhir"

	resp, body := tb.do("GET", base+"/.well-known/smart-configuration", "", nil, "")
	wantStatus(t, "smart-configuration", resp, body, 200)
	if !strings.Contains(body, `"token_endpoint":"`+tb.s.base+`/auth/token"`) {
		t.Errorf("smart-configuration: %s", body)
	}

	// A kick-off without a token.
	resp, body = tb.do("GET", base+"/$export", "", bulkKickoffHeaders, "")
	wantStatus(t, "kick-off without token", resp, body, 401)
	if resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(body, "OperationOutcome") {
		t.Errorf("401: %v %s", resp.Header, body)
	}

	tok := tb.token("jti-1")
	if !strings.HasPrefix(tok, "tok-1-") || tb.tokens.String() != tok+"\n" {
		t.Fatalf("token %q, bulk.tokens %q", tok, tb.tokens.String())
	}

	// The same assertion again: its jti is replayed.
	rsa1, ec1, _ := tb.keys.private()
	a := tb.assertion(jose.RS384, rsa1, tb.claims("jti-2"))
	if code, body := tb.tokenRequest(a); code != 200 {
		t.Fatalf("jti-2: %d %v", code, body)
	}
	if code, body := tb.tokenRequest(a); code != 401 || body["error"] != "invalid_client" || body["error_description"] != "jti replayed" {
		t.Errorf("replayed: %d %v", code, body)
	}
	// A wrong aud.
	c := tb.claims("jti-3")
	c.Audience = jwt.Audience{tb.s.base + "/fhir"}
	if code, body := tb.tokenRequest(tb.assertion(jose.RS384, rsa1, c)); code != 401 || body["error_description"] != "aud is not the token URL" {
		t.Errorf("wrong aud: %d %v", code, body)
	}
	// An exp too far ahead, and one past.
	c = tb.claims("jti-4")
	c.Expiry = jwt.NewNumericDate(time.Now().Add(time.Hour))
	if code, body := tb.tokenRequest(tb.assertion(jose.RS384, rsa1, c)); code != 401 || body["error_description"] != "exp is more than 5 minutes ahead" {
		t.Errorf("exp ahead: %d %v", code, body)
	}
	c = tb.claims("jti-5")
	c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	if code, body := tb.tokenRequest(tb.assertion(jose.RS384, rsa1, c)); code != 401 || body["error_description"] != "exp is past" {
		t.Errorf("exp past: %d %v", code, body)
	}
	// RS256 is refused; an unregistered key under a registered kid does not verify.
	if code, body := tb.tokenRequest(tb.assertion(jose.RS256, rsa1, tb.claims("jti-6"))); code != 401 || body["error_description"] != "alg RS256 is not RS384 or ES384" {
		t.Errorf("RS256: %d %v", code, body)
	}
	wrong := jose.JSONWebKey{Key: tb.keys.wrong, KeyID: "rsa1"}
	if code, body := tb.tokenRequest(tb.assertion(jose.RS384, wrong, tb.claims("jti-7"))); code != 401 || body["error_description"] != "signature does not match any registered key" {
		t.Errorf("wrong key: %d %v", code, body)
	}
	// The EC key, its kid its RFC 7638 thumbprint.
	ec1Public := ec1.Public()
	tp, err := ec1Public.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	byThumb := jose.JSONWebKey{Key: tb.keys.ec1, KeyID: base64.RawURLEncoding.EncodeToString(tp)}
	if code, body := tb.tokenRequest(tb.assertion(jose.ES384, byThumb, tb.claims("jti-8"))); code != 200 || body["scope"] != "system/*.read" || body["expires_in"] != 300.0 {
		t.Errorf("thumbprint kid: %d %v", code, body)
	}

	// Kick-off, a poll answered 202, then the manifest.
	tb.s.mu.Lock()
	tb.s.nextPolls, tb.s.progress, tb.s.retryAfter = 1, "50%", 2
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", base+"/$export?_type=Patient,Condition", tok, bulkKickoffHeaders, "")
	wantStatus(t, "kick-off", resp, body, 202)
	status := resp.Header.Get("Content-Location")
	if !strings.HasPrefix(status, base+"/$export-status/") {
		t.Fatalf("Content-Location %q", status)
	}
	resp, body = tb.do("GET", status, tok, nil, "")
	wantStatus(t, "first poll", resp, body, 202)
	if resp.Header.Get("X-Progress") != "50%" || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("first poll: %v", resp.Header)
	}
	resp, body = tb.do("GET", status, tok, nil, "")
	wantStatus(t, "second poll", resp, body, 200)
	if resp.Header.Get("Expires") == "" {
		t.Errorf("no Expires")
	}
	var m bulkManifest
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, m.TransactionTime); err != nil || !strings.HasSuffix(m.TransactionTime, "Z") {
		t.Errorf("transactionTime %q", m.TransactionTime)
	}
	if m.Request != base+"/$export?_type=Patient,Condition" || !m.RequiresAccessToken {
		t.Errorf("manifest: %s", body)
	}
	if len(m.Output) != 2 || m.Output[0].Type != "Condition" || *m.Output[0].Count != 3 || m.Output[1].Type != "Patient" || *m.Output[1].Count != 2 ||
		len(m.Deleted) != 1 || m.Deleted[0].Type != "Bundle" || len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" {
		t.Fatalf("manifest: %s", body)
	}

	// The file: with the token only; a Range on its ETag.
	patients := m.Output[1].URL
	resp, body = tb.do("GET", patients, "", nil, "")
	wantStatus(t, "file without token", resp, body, 401)
	resp, body = tb.do("GET", patients, tok, nil, "")
	wantStatus(t, "file", resp, body, 200)
	if resp.Header.Get("Content-Type") != "application/fhir+ndjson" || strings.Count(body, "\n") != 2 {
		t.Errorf("file: %v %q", resp.Header, body)
	}
	etag := resp.Header.Get("ETag")
	resp, rest := tb.do("GET", patients, tok, map[string]string{"Range": "bytes=10-", "If-Range": etag}, "")
	wantStatus(t, "range", resp, rest, 206)
	if rest != body[10:] {
		t.Errorf("range: %q", rest)
	}
	// The .gz file, uncompressed unless gzip is accepted.
	resp, body = tb.do("GET", m.Output[0].URL, tok, nil, "")
	if resp.StatusCode != 200 || strings.Count(body, "Condition") != 3 || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gz file: %v %q", resp.Header, body)
	}

	// An expired token (lifetime 0) and a revoked one are refused.
	tb.s.mu.Lock()
	tb.s.tokenLifetime = 0
	tb.s.mu.Unlock()
	expired := tb.token("jti-9")
	resp, body = tb.do("GET", status, expired, nil, "")
	wantStatus(t, "expired token", resp, body, 401)
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "token expired") {
		t.Errorf("expired token: %v", resp.Header)
	}
	tb.s.mu.Lock()
	tb.s.revokedThrough = tb.s.counts["tokens"]
	tb.s.tokenLifetime = 300 * time.Second
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", status, tok, nil, "")
	wantStatus(t, "revoked token", resp, body, 401)
	tok = tb.token("jti-10")

	// DELETE, then the status and the files are 404.
	resp, body = tb.do("DELETE", status, tok, nil, "")
	wantStatus(t, "delete", resp, body, 202)
	resp, body = tb.do("GET", status, tok, nil, "")
	wantStatus(t, "status after delete", resp, body, 404)
	resp, body = tb.do("GET", patients, tok, nil, "")
	wantStatus(t, "file after delete", resp, body, 404)

	log := tb.log.String()
	for _, want := range []string{
		"GET /fhir/$export auth=NONE -> 401 no authorization\n",
		"POST /auth/token auth=NONE -> 200 tok-1 key=rsa1 kid=rsa1 alg=RS384 scope=system/*.read\n",
		"POST /auth/token auth=NONE -> 401 invalid_client: jti replayed\n",
		"key=ec1 kid=" + byThumb.KeyID + " alg=ES384",
		"GET /fhir/$export?_type=Patient,Condition auth=bearer:tok-1 -> 202 job=",
		" auth=bearer:tok-1 -> 202 in-progress\n",
		" auth=bearer:tok-1 -> 200 manifest\n",
		"Patient.ndjson auth=bearer:tok-1 -> 206 range=bytes=10- if-range\n",
		" auth=bearer:tok-4 -> 401 token expired\n",
		" auth=bearer:tok-1 -> 401 token revoked\n",
		"DELETE /fhir/$export-status/",
		" auth=bearer:tok-5 -> 404 deleted job\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for tok := range strings.SplitSeq(strings.TrimSpace(tb.tokens.String()), "\n") {
		if strings.Contains(log, tok) {
			t.Errorf("the log holds token %s", tok)
		}
	}
}

// TestBulkServerFaults: POST kick-off with Parameters, presigned files,
// the kick-off's and the poll's failures.
func TestBulkServerFaults(t *testing.T) {
	tb := newTestBulk(t, "none")
	base := tb.s.base + "/fhir"

	resp, body := tb.do("GET", base+"/$export", "", map[string]string{"Accept": "application/fhir+json"}, "")
	wantStatus(t, "no Prefer", resp, body, 400)
	resp, body = tb.do("GET", base+"/$export", "", map[string]string{"Prefer": "respond-async"}, "")
	wantStatus(t, "no Accept", resp, body, 400)
	resp, body = tb.do("GET", base+"/$export?_outputFormat=text/csv", "", bulkKickoffHeaders, "")
	wantStatus(t, "_outputFormat", resp, body, 400)
	resp, body = tb.do("POST", base+"/Patient/$export", "", bulkKickoffHeaders, "")
	wantStatus(t, "POST without Parameters", resp, body, 400)

	tb.s.mu.Lock()
	tb.s.kickoffFailCode, tb.s.kickoffFailN = 503, 1
	tb.s.presigned = true
	tb.s.txtime = "2026-01-02T03:04:05.678Z"
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", base+"/$export", "", bulkKickoffHeaders, "")
	wantStatus(t, "kickoff-fail", resp, body, 503)
	if resp.Header.Get("Retry-After") != "0" {
		t.Errorf("503: %v", resp.Header)
	}
	params := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Observation"},{"name":"patient","valueReference":{"reference":"Patient/1"}}]}`
	resp, body = tb.do("POST", base+"/Group/g1/$export", "", bulkKickoffHeaders, params)
	wantStatus(t, "POST kick-off", resp, body, 202)
	status := resp.Header.Get("Content-Location")

	tb.s.mu.Lock()
	tb.s.pollTransientN, tb.s.pollError, tb.s.pollFailCode, tb.s.pollFailN, tb.s.held = 1, true, 500, 1, true
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", status, "", nil, "")
	if resp.StatusCode != 500 || !strings.Contains(body, `"code":"exception"`) || !strings.Contains(body, "export job failed: disk full") {
		t.Errorf("poll-error: %d %s", resp.StatusCode, body)
	}
	resp, body = tb.do("GET", status, "", nil, "")
	if resp.StatusCode != 500 || body != "" {
		t.Errorf("poll-fail: %d %s", resp.StatusCode, body)
	}
	resp, body = tb.do("GET", status, "", nil, "")
	if resp.StatusCode != 500 || !strings.Contains(body, `"code":"transient"`) {
		t.Errorf("poll-transient: %d %s", resp.StatusCode, body)
	}
	resp, body = tb.do("GET", status, "", nil, "")
	wantStatus(t, "held", resp, body, 202)
	if _, ok := resp.Header["Retry-After"]; ok {
		t.Errorf("Retry-After without retry-after: %v", resp.Header)
	}
	tb.s.mu.Lock()
	tb.s.held = false
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", status, "", nil, "")
	wantStatus(t, "poll", resp, body, 200)
	var m bulkManifest
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if m.TransactionTime != "2026-01-02T03:04:05.678Z" || m.RequiresAccessToken || len(m.Output) != 1 || m.Output[0].Type != "Observation" ||
		!strings.HasPrefix(m.Output[0].URL, tb.s.filesBase+"/files/") || !strings.Contains(m.Output[0].URL, "?sig=") {
		t.Fatalf("manifest: %s", body)
	}
	u := m.Output[0].URL
	resp, body = tb.do("GET", u, "", nil, "")
	wantStatus(t, "presigned file", resp, body, 200)
	resp, body = tb.do("GET", u, "tok-1-x", nil, "")
	wantStatus(t, "presigned file with a token", resp, body, 200)
	resp, body = tb.do("GET", strings.Split(u, "?")[0]+"?sig=nope", "", nil, "")
	wantStatus(t, "bad sig", resp, body, 403)

	// Not a Bulk Data server; GET refused; the export service down; an
	// extra url in the next job.
	for _, c := range []struct{ notBulk, ctype, body string }{
		{"html", "text/html; charset=utf-8", "<html>"},
		{"json", "application/json", `{"hello":"world"}`},
	} {
		tb.s.mu.Lock()
		tb.s.notBulk = c.notBulk
		tb.s.mu.Unlock()
		resp, body = tb.do("GET", base+"/$export", "", bulkKickoffHeaders, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || !strings.HasPrefix(body, c.body) {
			t.Errorf("not-bulk %s: %d %v %s", c.notBulk, resp.StatusCode, resp.Header, body)
		}
	}
	tb.s.mu.Lock()
	tb.s.notBulk, tb.s.get405, tb.s.kickoffFailCode, tb.s.kickoffFailN = "", true, 500, 1
	tb.s.fileURL = "ftp://example.com/Patient.ndjson"
	tb.s.presigned = false
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", base+"/$export", "", bulkKickoffHeaders, "")
	wantStatus(t, "get405", resp, body, 405)
	resp, body = tb.do("POST", base+"/$export", "", bulkKickoffHeaders, `{"resourceType":"Parameters"}`)
	if resp.StatusCode != 500 || !strings.Contains(body, `"code":"exception"`) || !strings.Contains(body, "the export service is down") {
		t.Errorf("kickoff-fail 500: %d %s", resp.StatusCode, body)
	}
	resp, body = tb.do("POST", base+"/$export", "", bulkKickoffHeaders, `{"resourceType":"Parameters"}`)
	wantStatus(t, "POST kick-off", resp, body, 202)
	resp, body = tb.do("GET", resp.Header.Get("Content-Location"), "", nil, "")
	wantStatus(t, "poll", resp, body, 200)
	var m2 bulkManifest
	if err := json.Unmarshal([]byte(body), &m2); err != nil {
		t.Fatal(err)
	}
	if n := len(m2.Output); n != 4 || m2.Output[n-1].URL != "ftp://example.com/Patient.ndjson" || m2.Output[n-1].Count != nil {
		t.Errorf("file-url: %s", body)
	}

	// A redirect to the pre-signed url.
	tb.s.mu.Lock()
	tb.s.redirect = true
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", m2.Output[0].URL, "", nil, "")
	wantStatus(t, "redirect", resp, body, 307)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, tb.s.filesBase+"/files/") || !strings.Contains(loc, "?sig=") {
		t.Errorf("redirect to %q", loc)
	}

	tb.s.mu.Lock()
	for _, j := range tb.s.jobs {
		j.expired = true
	}
	tb.s.mu.Unlock()
	resp, body = tb.do("GET", u, "", nil, "")
	wantStatus(t, "expired file", resp, body, 410)
	resp, body = tb.do("GET", status, "", nil, "")
	wantStatus(t, "expired status", resp, body, 404)

	log := tb.log.String()
	for _, want := range []string{
		"POST /fhir/Group/g1/$export auth=NONE -> 202 job=",
		" _type=Observation patient=Patient/1\n",
		"GET /fhir/$export auth=NONE -> 503 kickoff-fail\n",
		"GET /fhir/$export auth=NONE -> 405 get405\n",
		"POST /fhir/$export auth=NONE -> 500 kickoff-fail\n",
		" presigned auth=none -> 200\n",
		" presigned auth=SENT -> 200\n",
		" presigned auth=none -> 410 expired job\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestBulkKeysFiles: the key files are what bulkserver's doc says, and
// the registered JWKS is their public half.
func TestBulkKeysFiles(t *testing.T) {
	keys, err := newBulkKeys()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.write(dir); err != nil {
		t.Fatal(err)
	}
	block := func(name, typ string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		if b == nil || b.Type != typ {
			t.Fatalf("%s: not a PEM %s", name, typ)
		}
		return b.Bytes
	}
	if k, err := x509.ParsePKCS8PrivateKey(block("rsa.pem", "PRIVATE KEY")); err != nil || !k.(*rsa.PrivateKey).Equal(keys.rsa1) || keys.rsa1.N.BitLen() != 2048 {
		t.Errorf("rsa.pem: %v", err)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block("wrong.pem", "PRIVATE KEY")); err != nil || !k.(*rsa.PrivateKey).Equal(keys.wrong) {
		t.Errorf("wrong.pem: %v", err)
	}
	if k, err := x509.ParseECPrivateKey(block("ec.pem", "EC PRIVATE KEY")); err != nil || k.Curve != elliptic.P384() || !k.Equal(keys.ec1) {
		t.Errorf("ec.pem: %v", err)
	}
	if k, err := x509.ParseECPrivateKey(block("p256.pem", "EC PRIVATE KEY")); err != nil || k.Curve != elliptic.P256() {
		t.Errorf("p256.pem: %v", err)
	}
	readJSON := func(name string, v any) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var jwk jose.JSONWebKey
	readJSON("rsa1.jwk.json", &jwk)
	if jwk.KeyID != "rsa1" || jwk.IsPublic() || !jwk.Key.(*rsa.PrivateKey).Equal(keys.rsa1) {
		t.Errorf("rsa1.jwk.json: %+v", jwk)
	}
	var set jose.JSONWebKeySet
	readJSON("ec.jwks.json", &set)
	if len(set.Keys) != 2 || set.Keys[0].KeyID != "ec1" || set.Keys[1].KeyID != "rsa2" || set.Keys[0].IsPublic() || set.Keys[1].IsPublic() ||
		!set.Keys[0].Key.(*ecdsa.PrivateKey).Equal(keys.ec1) || !set.Keys[1].Key.(*rsa.PrivateKey).Equal(keys.rsa2) {
		t.Errorf("ec.jwks.json: %+v", set)
	}
	var reg jose.JSONWebKeySet
	readJSON("registered.jwks.json", &reg)
	if len(reg.Keys) != 3 || reg.Keys[0].KeyID != "rsa1" || reg.Keys[1].KeyID != "ec1" || reg.Keys[2].KeyID != "rsa2" {
		t.Fatalf("registered.jwks.json: %+v", reg)
	}
	for _, k := range reg.Keys {
		if !k.IsPublic() {
			t.Errorf("registered.jwks.json: %s is private", k.KeyID)
		}
	}
}
