package cmd

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fhirbulk/fhirbulk/pkg/smart"
)

// bulkServerCmds are the script commands of the Bulk Data test server: an
// HL7 Bulk Data (FHIR $export) server of our own that misbehaves on purpose.
func bulkServerCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"bulkserver": cmdBulkServer,
		"bulk":       cmdBulk,
		"smartkeys":  cmdSMARTKeys,
		"smarttoken": cmdSMARTToken,
	}
}

// smarttoken FILE CLIENT KEY URLFILE SCOPE gets an access token from the
// token endpoint whose URL URLFILE holds, as a SMART backend client does,
// with our own smart package, and writes it to FILE for curl -H @FILE.
// With !, the request must be refused; the refusal goes to stdout.
func cmdSMARTToken(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 5 {
		ts.Fatalf("usage: smarttoken FILE CLIENT KEY URLFILE SCOPE")
	}
	key, err := smart.LoadKey(ts.MkAbs(args[2]), "")
	ts.Check(err)
	src := &smart.TokenSource{TokenURL: ts.ReadFile(args[3]), ClientID: args[1], Scope: args[4], Key: key}
	src.TokenURL = strings.TrimSpace(src.TokenURL)
	tok, err := src.Token(context.Background())
	if neg {
		if err == nil {
			ts.Fatalf("smarttoken: got a token")
		}
		ts.Stdout().Write([]byte(err.Error() + "\n"))
		return
	}
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte("Authorization: Bearer "+tok+"\n"), 0o600))
}

// smartkeys DIR writes the test client's keys to DIR as bulkserver does
// (rsa.pem, ec.jwks.json, wrong.pem, ...) and DIR/clients.json, a serve
// --smart-clients file registering them as client fhirbulk-test (scope
// system/*.read), as client patients-only (system/Patient.read) and as
// client writer-only (system/Observation.write patient/*.read: no type a
// bulk export reads).
func cmdSMARTKeys(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: smartkeys DIR")
	}
	keys, err := newBulkKeys()
	ts.Check(err)
	dir := ts.MkAbs(args[0])
	ts.Check(keys.write(dir))
	jwks := jose.JSONWebKeySet{Keys: keys.registered()}
	clients, err := json.MarshalIndent([]map[string]any{
		{"clientId": "fhirbulk-test", "jwks": jwks, "scope": "system/*.read"},
		{"clientId": "patients-only", "jwks": jwks, "scope": "system/Patient.read"},
		{"clientId": "writer-only", "jwks": jwks, "scope": "system/Observation.write patient/*.read"},
	}, "", "  ")
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "clients.json"), clients, 0o600))
}

// bulkServers holds each running script's Bulk Data server (a script
// command has no other way to reach what an earlier one made); keyed by
// script.
var bulkServers sync.Map // *testscript.TestScript → *bulkServer

const (
	bulkClientID = "fhirbulk-test" // the one registered SMART client
	bulkWait     = 30 * time.Second
	bulkNDJSON   = "application/fhir+ndjson"
	bulkFHIRJSON = "application/fhir+json"
)

// bulkserver DIR [-auth none|smart|bearer|basic] [-token TOKEN] [-user U:P]
// starts an HL7 Bulk Data server on a free port of 127.0.0.1 whose export
// is the files of DIR (relative to $WORK), read again at every kick-off:
// each *.ndjson or *.ndjson.gz directly in DIR is an output file of the
// type its name starts with (up to the first "."), each one in DIR/deleted/
// a "deleted" entry (type Bundle), each one in DIR/error/ an "error" entry
// (type OperationOutcome); a count is the number of non-blank lines (of a
// .gz, once uncompressed). It sets
//
//	BULK       http://127.0.0.1:PORT/fhir, the FHIR base
//	BULKFILES  http://127.0.0.1:PORT2, a second listener for pre-signed files
//	BULKLOG    $WORK/bulk.log
//	BULKTOKEN  its token endpoint (with -auth smart)
//
// and writes the client's keys to $WORK/keys/: rsa.pem (RSA 2048, PKCS#8,
// registered as kid rsa1), rsa1.jwk.json (that key as a private JWK, kid
// rsa1), ec.pem (EC P-384, SEC1 "EC PRIVATE KEY", registered as ec1),
// ec.jwks.json (a private JWKS: that EC key as ec1 and another RSA key,
// registered as rsa2), wrong.pem (RSA, PKCS#8, not registered), p256.pem
// (EC P-256, SEC1, not registered) and registered.jwks.json (the public
// JWKS of client fhirbulk-test: rsa1, ec1, rsa2). A client assertion's kid
// may be a registered kid or the RFC 7638 thumbprint (SHA-256, base64url)
// of a registered key.
//
// -auth says what the kick-off, status and file requests need (default
// none): smart, a token from POST /auth/token (SMART Backend Services:
// client_credentials with a JWT assertion signed RS384 or ES384) as
// "Authorization: Bearer"; bearer, the static -token; basic, -user's user
// and password. Without it: 401 with WWW-Authenticate and an
// OperationOutcome.
//
// Routes, on PORT:
//
//	GET /fhir/.well-known/smart-configuration   (-auth smart; else 404)
//	POST /auth/token                            (-auth smart; else 404)
//	GET|POST /fhir/$export, /fhir/Patient/$export, /fhir/Group/ID/$export
//	    the kick-off: needs Prefer: respond-async and Accept:
//	    application/fhir+json (else 400); GET parameters in the query, POST
//	    in a Parameters body (else 400); _type (a comma list) limits the
//	    output files; _outputFormat other than application/fhir+ndjson,
//	    application/ndjson or ndjson is 400; 202 with Content-Location
//	    http://127.0.0.1:PORT/fhir/$export-status/JOBID
//	GET /fhir/$export-status/JOBID
//	    202 (X-Progress, Retry-After as set by "bulk") while held or for the
//	    job's first "bulk polls N" polls; then 200, application/json, the
//	    manifest, with Expires an hour ahead
//	DELETE /fhir/$export-status/JOBID
//	    202; the status and the files are 404 from then on
//	GET /fhir/$export-file/JOBID/NAME
//	    the file (NAME as in DIR; deleted/NAME, error/NAME for those),
//	    application/fhir+ndjson, with a strong ETag and Range (a .gz file is
//	    sent as it is with Content-Encoding: gzip when the request accepts
//	    gzip, else uncompressed)
//
// and on PORT2, with no authorization (a request that has one anyway is
// logged "auth=SENT"):
//
//	GET /files/JOBID/NAME?sig=SIG   the same file (403 without the job's SIG)
//
// An unknown job or route is 404 with an OperationOutcome. Every request is
// logged to $WORK/bulk.log as one line,
//
//	METHOD PATH[?QUERY] auth=AUTH -> STATUS[ NOTE]
//	METHOD PATH[?QUERY] presigned auth=none|SENT -> STATUS[ NOTE]   (PORT2)
//
// where AUTH is NONE (no Authorization header), bearer:tok-N (a token the
// server issued, whatever its state), bearer:static (the -token), basic
// (-user's), or bad (anything else). NOTE is, by route:
//
//	kick-off  job=JOBID (a POST's parameters after it, NAME=VALUE each),
//	          not-bulk, get405, kickoff-fail, "no Prefer: respond-async",
//	          "no Accept: application/fhir+json", "bad Parameters",
//	          "bad _outputFormat", "bad DIR"
//	status    in-progress, held, manifest, "manifest presigned", poll-fail,
//	          poll-transient, poll-error, deleted (a DELETE), "unknown job",
//	          "deleted job", "expired job"
//	file      range=RANGE, if-range, hold (each when so), redirect,
//	          "bad sig", "unknown job", "deleted job", "expired job",
//	          "unknown file"
//	token     "tok-N key=KID kid=SENTKID alg=ALG scope=SCOPE" (KID the
//	          registered kid of the key that verified), or "ERROR: DESCRIPTION"
//	          as answered (invalid_client: jti replayed, ...); "not smart"
//	          (404 without -auth smart)
//	any 401   why: "no authorization", "unknown token", "token expired",
//	          "token revoked", "wrong user or password"
//	else      "no such route"
//
// A token or an assertion is never logged whole: every token issued (and
// the -token) is a line of $WORK/bulk.tokens instead, for
// "! grep -rFf $WORK/bulk.tokens DIR".
func cmdBulkServer(ts *testscript.TestScript, neg bool, args []string) {
	usage := "usage: bulkserver DIR [-auth none|smart|bearer|basic] [-token TOKEN] [-user U:P]"
	if neg || len(args) == 0 || strings.HasPrefix(args[0], "-") {
		ts.Fatalf("%s", usage)
	}
	if _, ok := bulkServers.Load(ts); ok {
		ts.Fatalf("bulkserver: one is already running in this script")
	}
	cfg := bulkConfig{dir: ts.MkAbs(args[0]), auth: "none"}
	for rest := args[1:]; len(rest) > 0; rest = rest[2:] {
		if len(rest) < 2 {
			ts.Fatalf("%s", usage)
		}
		switch rest[0] {
		case "-auth":
			cfg.auth = rest[1]
		case "-token":
			cfg.token = rest[1]
		case "-user":
			cfg.user = rest[1]
		default:
			ts.Fatalf("%s", usage)
		}
	}
	switch {
	case cfg.auth != "none" && cfg.auth != "smart" && cfg.auth != "bearer" && cfg.auth != "basic":
		ts.Fatalf("bulkserver: -auth %q: want none, smart, bearer or basic", cfg.auth)
	case cfg.auth == "bearer" && cfg.token == "":
		ts.Fatalf("bulkserver: -auth bearer needs -token")
	case cfg.auth == "basic" && !strings.Contains(cfg.user, ":"):
		ts.Fatalf("bulkserver: -auth basic needs -user U:P")
	}
	keys, err := newBulkKeys()
	ts.Check(err)
	ts.Check(keys.write(ts.MkAbs("keys")))
	cfg.keys = keys.registered()
	logf, err := os.Create(ts.MkAbs("bulk.log"))
	ts.Check(err)
	tokf, err := os.Create(ts.MkAbs("bulk.tokens"))
	ts.Check(err)
	if cfg.token != "" {
		fmt.Fprintln(tokf, cfg.token)
	}
	cfg.log, cfg.tokens = logf, tokf
	s, err := newBulkServer(cfg)
	ts.Check(err)
	main := httptest.NewUnstartedServer(s)
	files := httptest.NewUnstartedServer(s.presignedHandler())
	s.base = "http://" + main.Listener.Addr().String()
	s.filesBase = "http://" + files.Listener.Addr().String()
	main.Start()
	files.Start()
	ts.Defer(func() {
		s.shutdown()
		for _, srv := range []*httptest.Server{main, files} {
			srv.CloseClientConnections()
			srv.Close()
		}
		logf.Close()
		tokf.Close()
	})
	bulkServers.Store(ts, s)
	ts.Defer(func() { bulkServers.Delete(ts) })
	ts.Setenv("BULK", s.base+"/fhir")
	ts.Setenv("BULKFILES", s.filesBase)
	ts.Setenv("BULKLOG", ts.MkAbs("bulk.log"))
	ts.Setenv("BULKTOKEN", s.base+"/auth/token")
}

// bulk SETTING [ARGS] changes the script's Bulk Data server from now on:
//
//	retry-after N|off      Retry-After: N (seconds) on a status poll's 202
//	                       (off, the default: no Retry-After)
//	retry-after-date N     Retry-After as an HTTP date N seconds ahead
//	progress [TEXT...]     X-Progress: TEXT on a status poll's 202 (none
//	                       without TEXT, the default)
//	polls N                the next job kicked off answers 202 to its first
//	                       N status polls (default 0: ready at once)
//	hold, release          while held, every status poll answers 202
//	kickoff-fail CODE N    the next N kick-offs (that pass auth) answer CODE:
//	                       429 and 503 with Retry-After: 0, 500 with an
//	                       OperationOutcome (issue code exception,
//	                       diagnostics "the export service is down")
//	poll-fail CODE N       the next N status polls answer CODE (500, say)
//	                       with an empty body
//	poll-transient N       the next N status polls answer 500 with an
//	                       OperationOutcome of issue code transient
//	poll-error             the next status poll answers 500 with an
//	                       OperationOutcome of issue code exception,
//	                       diagnostics "export job failed: disk full"
//	get405 [off]           a kick-off by GET answers 405 (Allow: POST)
//	not-bulk html|404|json|off
//	                       a kick-off answers 200 text/html, 404 text/html,
//	                       or 200 application/json {"hello":"world"}, before
//	                       any check; off: back to normal
//	expire                 the jobs there are now answer 404 to a status
//	                       request and 410 Gone to a file request
//	token-lifetime N       tokens issued from now on last N seconds (default
//	                       300; 0: expired at once)
//	revoke                 every token issued so far is refused (401)
//	presigned [off]        manifests served from now on list
//	                       $BULKFILES/files/JOBID/NAME?sig=SIG urls with
//	                       requiresAccessToken false
//	redirect [off]         a file request on PORT (once authorized) answers
//	                       307 to the same file on PORT2, with ?sig=SIG
//	file-url URL           the next job kicked off lists one more output,
//	                       {type Patient, url URL} (no count)
//	hold-file NAME         a GET of file NAME (of any job, either port) sends
//	                       the first half of its body, flushes, and waits for
//	                       release-file (or the client to go away)
//	release-file           lets the held file requests go on and ends hold-file
//	wait-held              waits (up to 30 s) until a file request is held
//	wait-polls N|+N        waits (up to 30 s) until N status polls were
//	                       answered in all (+N: since the last hold)
//	wait-tokens N          waits (up to 30 s) until N tokens were issued
//	txtime TIME            the transactionTime of jobs kicked off from now on
//	                       (as it is; default the kick-off's time, RFC 3339
//	                       UTC with milliseconds)
//	count kickoffs|polls|tokens|deletes|files
//	                       prints that count, then a newline: kick-off
//	                       requests, status GETs, tokens issued, status
//	                       DELETEs, file requests (both ports), all so far
func cmdBulk(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: bulk SETTING [ARGS]")
	}
	v, ok := bulkServers.Load(ts)
	if !ok {
		ts.Fatalf("bulk: no bulkserver in this script")
	}
	s := v.(*bulkServer)
	want := func(n int, usage string) {
		if len(args) != n+1 {
			ts.Fatalf("usage: bulk %s %s", args[0], usage)
		}
	}
	num := func(i int) int {
		n, err := strconv.Atoi(args[i])
		if err != nil || n < 0 {
			ts.Fatalf("bulk %s: bad number %q", args[0], args[i])
		}
		return n
	}
	onOff := func() bool {
		if len(args) == 2 && args[1] == "off" {
			return false
		}
		want(0, "[off]")
		return true
	}
	switch args[0] {
	case "wait-held":
		want(0, "")
		s.wait(ts, "a held file request", func() bool { return s.heldNow > 0 })
		return
	case "wait-polls":
		want(1, "N|+N")
		// +N: N polls since the last hold (earlier pulls of the script
		// polled too: N alone could be met before this kick-off).
		since := 0
		if rest, ok := strings.CutPrefix(args[1], "+"); ok {
			args[1] = rest
			s.mu.Lock()
			since = s.heldAtPolls
			s.mu.Unlock()
		}
		n := since + num(1)
		s.wait(ts, fmt.Sprintf("%d status polls", n), func() bool { return s.counts["polls"] >= n })
		return
	case "wait-tokens":
		want(1, "N")
		n := num(1)
		s.wait(ts, fmt.Sprintf("%d tokens", n), func() bool { return s.counts["tokens"] >= n })
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch args[0] {
	case "retry-after":
		want(1, "N|off")
		if args[1] == "off" {
			s.retryAfter = -1
		} else {
			s.retryAfter, s.retryAfterDate = num(1), false
		}
	case "retry-after-date":
		want(1, "N")
		s.retryAfter, s.retryAfterDate = num(1), true
	case "progress":
		s.progress = strings.Join(args[1:], " ")
	case "polls":
		want(1, "N")
		s.nextPolls = num(1)
	case "hold":
		want(0, "")
		s.held = true
		s.heldAtPolls = s.counts["polls"]
	case "release":
		want(0, "")
		s.held = false
	case "kickoff-fail":
		want(2, "CODE N")
		s.kickoffFailCode, s.kickoffFailN = num(1), num(2)
		if s.kickoffFailCode < 400 || s.kickoffFailCode > 599 {
			ts.Fatalf("bulk kickoff-fail: CODE %d is not an error status", s.kickoffFailCode)
		}
	case "poll-fail":
		want(2, "CODE N")
		s.pollFailCode, s.pollFailN = num(1), num(2)
		if s.pollFailCode < 400 || s.pollFailCode > 599 {
			ts.Fatalf("bulk poll-fail: CODE %d is not an error status", s.pollFailCode)
		}
	case "poll-transient":
		want(1, "N")
		s.pollTransientN = num(1)
	case "poll-error":
		want(0, "")
		s.pollError = true
	case "get405":
		s.get405 = onOff()
	case "not-bulk":
		want(1, "html|404|json|off")
		switch args[1] {
		case "html", "404", "json":
			s.notBulk = args[1]
		case "off":
			s.notBulk = ""
		default:
			ts.Fatalf("usage: bulk not-bulk html|404|json|off")
		}
	case "expire":
		want(0, "")
		for _, j := range s.jobs {
			j.expired = true
		}
	case "token-lifetime":
		want(1, "N")
		s.tokenLifetime = time.Duration(num(1)) * time.Second
	case "revoke":
		want(0, "")
		s.revokedThrough = s.counts["tokens"]
	case "presigned":
		s.presigned = onOff()
	case "redirect":
		s.redirect = onOff()
	case "file-url":
		want(1, "URL")
		s.fileURL = args[1]
	case "hold-file":
		want(1, "NAME")
		s.holdFile = args[1] // the gate is open until release-file closes it
	case "release-file":
		want(0, "")
		close(s.fileGate)
		s.holdFile, s.fileGate = "", make(chan struct{})
	case "txtime":
		want(1, "TIME")
		s.txtime = args[1]
	case "count":
		want(1, "kickoffs|polls|tokens|deletes|files")
		switch args[1] {
		case "kickoffs", "polls", "tokens", "deletes", "files":
			fmt.Fprintf(ts.Stdout(), "%d\n", s.counts[args[1]])
		default:
			ts.Fatalf("usage: bulk count kickoffs|polls|tokens|deletes|files")
		}
	default:
		ts.Fatalf("bulk: unknown setting %q", args[0])
	}
}

// bulkConfig is what a Bulk Data test server is made of.
type bulkConfig struct {
	dir    string            // the export's files
	auth   string            // none, smart, bearer or basic
	token  string            // the static bearer token (-auth bearer)
	user   string            // U:P (-auth basic)
	keys   []jose.JSONWebKey // the registered client's public keys, with kids
	log    io.Writer         // a line per request
	tokens io.Writer         // every token issued, a line each (may be nil)
}

// bulkServer is a Bulk Data server that misbehaves on purpose. Its main
// handler is the bulkServer itself; presignedHandler is the second
// listener's. base and filesBase are set before either serves.
type bulkServer struct {
	cfg       bulkConfig
	base      string // http://127.0.0.1:PORT
	filesBase string // http://127.0.0.1:PORT2
	byKid     map[string]jose.JSONWebKey
	byThumb   map[string]jose.JSONWebKey

	logMu sync.Mutex

	mu      sync.Mutex
	changed chan struct{} // closed and made anew when a count changes

	retryAfter      int // seconds; -1: no Retry-After
	retryAfterDate  bool
	progress        string
	nextPolls       int
	held            bool
	heldAtPolls     int // the polls counted when held was set (wait-polls +N)
	kickoffFailCode int
	kickoffFailN    int
	pollFailCode    int
	pollFailN       int
	pollTransientN  int
	pollError       bool
	get405          bool
	notBulk         string
	tokenLifetime   time.Duration
	presigned       bool
	redirect        bool
	fileURL         string
	holdFile        string
	fileGate        chan struct{} // closed by release-file
	txtime          string

	jobs           map[string]*bulkJob
	tokens         map[string]bulkToken // by the whole token
	revokedThrough int                  // tokens tok-1 to tok-N are revoked
	jtis           map[string]bool
	counts         map[string]int
	heldNow        int
}

type bulkToken struct {
	n       int
	expires time.Time
}

type bulkJob struct {
	id, sig  string
	request  string
	txTime   string
	started  time.Time
	polls    int // 202s still to answer
	outputs  []*bulkFile
	deleted  []*bulkFile
	errors   []*bulkFile
	extraURL string
	expired  bool
	gone     bool // DELETEd
}

// bulkFile is one file of a job, as read at its kick-off.
type bulkFile struct {
	typ, name string // name: as in the urls, deleted/ and error/ included
	plain     []byte // the content (uncompressed)
	gz        []byte // for a .gz file: the file as it is
	count     int
	etag      string // of plain
	gzETag    string // of gz
}

func newBulkServer(cfg bulkConfig) (*bulkServer, error) {
	s := &bulkServer{
		cfg:           cfg,
		byKid:         map[string]jose.JSONWebKey{},
		byThumb:       map[string]jose.JSONWebKey{},
		changed:       make(chan struct{}),
		retryAfter:    -1,
		tokenLifetime: 300 * time.Second,
		fileGate:      make(chan struct{}),
		jobs:          map[string]*bulkJob{},
		tokens:        map[string]bulkToken{},
		jtis:          map[string]bool{},
		counts:        map[string]int{},
	}
	for _, k := range cfg.keys {
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		s.byKid[k.KeyID] = k
		s.byThumb[base64.RawURLEncoding.EncodeToString(tp)] = k
	}
	return s, nil
}

// shutdown lets every held file request go.
func (s *bulkServer) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.fileGate:
	default:
		close(s.fileGate)
	}
}

// bump adds one to a count. s.mu is held.
func (s *bulkServer) bump(name string) {
	s.counts[name]++
	s.notify()
}

// notify wakes whoever waits on a change. s.mu is held.
func (s *bulkServer) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait blocks until cond (called with s.mu held) is true, up to bulkWait.
func (s *bulkServer) wait(ts *testscript.TestScript, what string, cond func() bool) {
	deadline := time.NewTimer(bulkWait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			ts.Fatalf("bulk: no %s after %v", what, bulkWait)
		}
	}
}

func (s *bulkServer) logLine(line string) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	io.WriteString(s.cfg.log, line+"\n")
}

// bulkLogWriter logs its request's line when the status is known: before
// the body, so a held request is in the log already.
type bulkLogWriter struct {
	http.ResponseWriter
	s      *bulkServer
	prefix string
	note   string
	logged bool
}

func (l *bulkLogWriter) log(code int) {
	if l.logged {
		return
	}
	l.logged = true
	line := fmt.Sprintf("%s -> %d", l.prefix, code)
	if l.note != "" {
		line += " " + l.note
	}
	l.s.logLine(line)
}

func (l *bulkLogWriter) WriteHeader(code int) {
	l.log(code)
	l.ResponseWriter.WriteHeader(code)
}

func (l *bulkLogWriter) Write(p []byte) (int, error) {
	l.log(http.StatusOK)
	return l.ResponseWriter.Write(p)
}

func (l *bulkLogWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// bulkPathQuery is how a request's target is logged: the path, and ? and the
// query as sent when there is one.
func bulkPathQuery(r *http.Request) string {
	if r.URL.RawQuery != "" {
		return r.URL.Path + "?" + r.URL.RawQuery
	}
	return r.URL.Path
}

// bulkAuth is what a request's Authorization header is to the server.
type bulkAuth struct {
	label string // as logged: NONE, bearer:tok-N, bearer:static, basic, bad
	ok    bool   // enough for -auth
	why   string // why not
	token bool   // a bearer token was sent
}

func (s *bulkServer) authOf(r *http.Request) bulkAuth {
	h := r.Header.Get("Authorization")
	a := bulkAuth{label: "bad"}
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		a.label = "NONE"
	case strings.EqualFold(scheme, "Bearer"):
		a.token = true
		s.mu.Lock()
		t, known := s.tokens[cred]
		revoked := t.n <= s.revokedThrough
		s.mu.Unlock()
		switch {
		case known:
			a.label = fmt.Sprintf("bearer:tok-%d", t.n)
			if s.cfg.auth == "smart" {
				switch {
				case revoked:
					a.why = "token revoked"
				case !time.Now().Before(t.expires):
					a.why = "token expired"
				default:
					a.ok = true
				}
			}
		case s.cfg.token != "" && cred == s.cfg.token:
			a.label = "bearer:static"
			a.ok = s.cfg.auth == "bearer"
		default:
			a.why = "unknown token"
		}
	case strings.EqualFold(scheme, "Basic"):
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil && s.cfg.user != "" && string(dec) == s.cfg.user {
			a.label = "basic"
			a.ok = s.cfg.auth == "basic"
		} else {
			a.why = "wrong user or password"
		}
	}
	if s.cfg.auth == "none" {
		a.ok = true
	}
	if !a.ok && a.why == "" {
		a.why = "no authorization"
	}
	return a
}

// unauthorized answers 401 as -auth asks.
func (s *bulkServer) unauthorized(w *bulkLogWriter, a bulkAuth) {
	challenge := `Bearer realm="bulk"`
	if a.token {
		challenge += `, error="invalid_token", error_description="` + a.why + `"`
	}
	if s.cfg.auth == "basic" {
		challenge = `Basic realm="bulk"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.note = a.why
	bulkOutcome(w, http.StatusUnauthorized, "login", a.why)
}

// bulkOutcome answers status with an OperationOutcome of one issue.
func bulkOutcome(w http.ResponseWriter, status int, code, diagnostics string) {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "OperationOutcome",
		"issue": []map[string]string{{
			"severity":    "error",
			"code":        code,
			"diagnostics": diagnostics,
		}},
	})
	w.Header().Set("Content-Type", bulkFHIRJSON)
	w.WriteHeader(status)
	w.Write(body)
}

func bulkWriteJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func bulkRandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *bulkServer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	a := s.authOf(r)
	w := &bulkLogWriter{ResponseWriter: rw, s: s, prefix: fmt.Sprintf("%s %s auth=%s", r.Method, bulkPathQuery(r), a.label)}
	defer w.log(http.StatusOK)
	if r.URL.Path == "/auth/token" {
		s.token(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/fhir/")
	if !ok {
		w.note = "no such route"
		bulkOutcome(w, http.StatusNotFound, "not-found", "no such route: "+r.URL.Path)
		return
	}
	segs := strings.Split(rest, "/")
	switch {
	case rest == ".well-known/smart-configuration" && s.cfg.auth == "smart":
		bulkWriteJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                                   s.base + "/auth/token",
			"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
			"grant_types_supported":                            []string{"client_credentials"},
			"scopes_supported":                                 []string{"system/*.read"},
			"capabilities":                                     []string{"client-confidential-asymmetric"},
		})
	case rest == "$export", rest == "Patient/$export", len(segs) == 3 && segs[0] == "Group" && segs[1] != "" && segs[2] == "$export":
		s.kickoff(w, r, a)
	case len(segs) == 2 && segs[0] == "$export-status":
		s.status(w, r, a, segs[1])
	case len(segs) >= 3 && segs[0] == "$export-file":
		s.mainFile(w, r, a, segs[1], strings.Join(segs[2:], "/"))
	default:
		w.note = "no such route"
		bulkOutcome(w, http.StatusNotFound, "not-found", "no such route: "+r.URL.Path)
	}
}

// token is the SMART Backend Services token endpoint.
func (s *bulkServer) token(w *bulkLogWriter, r *http.Request) {
	if s.cfg.auth != "smart" {
		w.note = "not smart"
		bulkOutcome(w, http.StatusNotFound, "not-found", "no token endpoint without -auth smart")
		return
	}
	fail := func(status int, code, desc string) {
		w.note = code
		if desc != "" {
			w.note += ": " + desc
		}
		w.Header().Set("Cache-Control", "no-store")
		body := map[string]string{"error": code}
		if desc != "" {
			body["error_description"] = desc
		}
		bulkWriteJSON(w, status, body)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request", "the body is not a form: "+err.Error())
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "client_credentials":
		fail(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not client_credentials", f.Get("grant_type")))
		return
	case f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		fail(http.StatusBadRequest, "invalid_request", fmt.Sprintf("client_assertion_type %q is not urn:ietf:params:oauth:client-assertion-type:jwt-bearer", f.Get("client_assertion_type")))
		return
	case f.Get("client_assertion") == "":
		fail(http.StatusBadRequest, "invalid_request", "no client_assertion")
		return
	case f.Has("client_id") && f.Get("client_id") != bulkClientID:
		fail(http.StatusUnauthorized, "invalid_client", fmt.Sprintf("client_id %q is not registered", f.Get("client_id")))
		return
	}
	key, kid, alg, err := s.verifyAssertion(f.Get("client_assertion"), time.Now())
	if err != nil {
		fail(http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	scope := f.Get("scope")
	if scope != "system/*.read" && scope != "system/*.rs" {
		fail(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not system/*.read or system/*.rs", scope))
		return
	}
	s.mu.Lock()
	n := s.counts["tokens"] + 1
	tok := fmt.Sprintf("tok-%d-%s", n, bulkRandomHex(16))
	lifetime := s.tokenLifetime
	s.tokens[tok] = bulkToken{n: n, expires: time.Now().Add(lifetime)}
	if s.cfg.tokens != nil {
		io.WriteString(s.cfg.tokens, tok+"\n")
	}
	s.bump("tokens")
	s.mu.Unlock()
	w.note = fmt.Sprintf("tok-%d key=%s kid=%s alg=%s scope=%s", n, key, kid, alg, scope)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	bulkWriteJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "bearer",
		"expires_in":   int(lifetime / time.Second),
		"scope":        scope,
	})
}

// verifyAssertion checks a client assertion as SMART Backend Services
// asks and returns the registered kid of the key that signed it, and the
// kid and alg of its header; an error names what failed.
func (s *bulkServer) verifyAssertion(assertion string, now time.Time) (key, kid, alg string, err error) {
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
		jose.PS256, jose.PS384, jose.PS512, jose.HS256, jose.HS384, jose.HS512, jose.EdDSA}
	tok, err := jwt.ParseSigned(assertion, algs)
	if err != nil {
		return "", "", "", fmt.Errorf("client_assertion is not a signed JWT: %v", err)
	}
	if len(tok.Headers) != 1 {
		return "", "", "", fmt.Errorf("client_assertion has %d signatures, not 1", len(tok.Headers))
	}
	h := tok.Headers[0]
	kid, alg = h.KeyID, h.Algorithm
	if alg != string(jose.RS384) && alg != string(jose.ES384) {
		return "", kid, alg, fmt.Errorf("alg %s is not RS384 or ES384", alg)
	}
	if kid == "" {
		return "", kid, alg, fmt.Errorf("the JWT header has no kid")
	}
	k, ok := s.byKid[kid]
	if !ok {
		if k, ok = s.byThumb[kid]; !ok {
			return "", kid, alg, fmt.Errorf("kid %q is neither a registered kid nor the thumbprint of a registered key", kid)
		}
	}
	var c jwt.Claims
	if err := tok.Claims(k, &c); err != nil {
		return k.KeyID, kid, alg, fmt.Errorf("signature does not match any registered key")
	}
	switch {
	case c.Issuer != bulkClientID:
		return k.KeyID, kid, alg, fmt.Errorf("iss %q is not the client id %s", c.Issuer, bulkClientID)
	case c.Subject != bulkClientID:
		return k.KeyID, kid, alg, fmt.Errorf("sub %q is not the client id %s", c.Subject, bulkClientID)
	case len(c.Audience) != 1 || c.Audience[0] != s.base+"/auth/token":
		return k.KeyID, kid, alg, fmt.Errorf("aud is not the token URL")
	case c.Expiry == nil:
		return k.KeyID, kid, alg, fmt.Errorf("no exp")
	case !c.Expiry.Time().After(now):
		return k.KeyID, kid, alg, fmt.Errorf("exp is past")
	case c.Expiry.Time().After(now.Add(5*time.Minute + 10*time.Second)):
		return k.KeyID, kid, alg, fmt.Errorf("exp is more than 5 minutes ahead")
	case c.ID == "":
		return k.KeyID, kid, alg, fmt.Errorf("no jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jtis[c.ID] {
		return k.KeyID, kid, alg, fmt.Errorf("jti replayed")
	}
	s.jtis[c.ID] = true
	return k.KeyID, kid, alg, nil
}

// bulkParam is a kick-off parameter, as logged.
type bulkParam struct{ name, value string }

// kickoff starts a job.
func (s *bulkServer) kickoff(w *bulkLogWriter, r *http.Request, a bulkAuth) {
	s.mu.Lock()
	s.bump("kickoffs")
	notBulk := s.notBulk
	s.mu.Unlock()
	switch notBulk {
	case "html":
		w.note = "not-bulk"
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "<html><head><title>Welcome</title></head><body><h1>Welcome to our portal</h1></body></html>\n")
		return
	case "404":
		w.note = "not-bulk"
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n")
		return
	case "json":
		w.note = "not-bulk"
		bulkWriteJSON(w, http.StatusOK, map[string]string{"hello": "world"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		bulkOutcome(w, http.StatusMethodNotAllowed, "not-supported", "a kick-off is GET or POST")
		return
	}
	if !a.ok {
		s.unauthorized(w, a)
		return
	}
	s.mu.Lock()
	get405 := s.get405 && r.Method == http.MethodGet
	failCode := 0
	if !get405 && s.kickoffFailN > 0 {
		s.kickoffFailN--
		failCode = s.kickoffFailCode
	}
	s.mu.Unlock()
	if get405 {
		w.note = "get405"
		w.Header().Set("Allow", "POST")
		bulkOutcome(w, http.StatusMethodNotAllowed, "not-supported", "kick-off by GET is not supported: use POST")
		return
	}
	if failCode != 0 {
		w.note = "kickoff-fail"
	}
	switch failCode {
	case 0:
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "0")
		bulkOutcome(w, failCode, "throttled", "too many requests")
		return
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "0")
		bulkOutcome(w, failCode, "transient", "the export service is busy")
		return
	default:
		bulkOutcome(w, failCode, "exception", "the export service is down")
		return
	}
	if !bulkHasToken(r.Header.Values("Prefer"), "respond-async") {
		w.note = "no Prefer: respond-async"
		bulkOutcome(w, http.StatusBadRequest, "invalid", "the kick-off needs Prefer: respond-async")
		return
	}
	if !bulkAcceptsFHIRJSON(r.Header.Values("Accept")) {
		w.note = "no Accept: application/fhir+json"
		bulkOutcome(w, http.StatusBadRequest, "invalid", "the kick-off needs Accept: application/fhir+json")
		return
	}
	var params []bulkParam
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		names := make([]string, 0, len(q))
		for k := range q {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, v := range q[k] {
				params = append(params, bulkParam{k, v})
			}
		}
	} else {
		var err error
		if params, err = bulkParseParameters(r.Body); err != nil {
			w.note = "bad Parameters"
			bulkOutcome(w, http.StatusBadRequest, "invalid", "a POST kick-off needs a Parameters resource as its body: "+err.Error())
			return
		}
	}
	var types map[string]bool
	var logged []string
	for _, p := range params {
		logged = append(logged, p.name+"="+p.value)
		switch p.name {
		case "_type":
			if types == nil {
				types = map[string]bool{}
			}
			for t := range strings.SplitSeq(p.value, ",") {
				types[strings.TrimSpace(t)] = true
			}
		case "_outputFormat":
			switch p.value {
			case "application/fhir+ndjson", "application/ndjson", "ndjson":
			default:
				w.note = "bad _outputFormat"
				bulkOutcome(w, http.StatusBadRequest, "not-supported", fmt.Sprintf("_outputFormat %q is not supported: application/fhir+ndjson only", p.value))
				return
			}
		}
	}
	outputs, err := readBulkFiles(s.cfg.dir, "", "")
	if err == nil {
		var deleted, errs []*bulkFile
		if deleted, err = readBulkFiles(filepath.Join(s.cfg.dir, "deleted"), "deleted/", "Bundle"); err == nil {
			if errs, err = readBulkFiles(filepath.Join(s.cfg.dir, "error"), "error/", "OperationOutcome"); err == nil {
				s.startJob(w, r, types, outputs, deleted, errs, logged)
				return
			}
		}
	}
	w.note = "bad DIR"
	bulkOutcome(w, http.StatusInternalServerError, "exception", err.Error())
}

func (s *bulkServer) startJob(w *bulkLogWriter, r *http.Request, types map[string]bool, outputs, deleted, errs []*bulkFile, params []string) {
	now := time.Now()
	j := &bulkJob{
		id:      bulkRandomHex(8),
		sig:     bulkRandomHex(12),
		request: s.base + r.URL.RequestURI(),
		started: now,
		txTime:  now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		deleted: deleted,
		errors:  errs,
	}
	for _, f := range outputs {
		if types == nil || types[f.typ] {
			j.outputs = append(j.outputs, f)
		}
	}
	s.mu.Lock()
	if s.txtime != "" {
		j.txTime = s.txtime
	}
	j.polls, s.nextPolls = s.nextPolls, 0
	j.extraURL, s.fileURL = s.fileURL, ""
	s.jobs[j.id] = j
	s.mu.Unlock()
	w.note = "job=" + j.id
	if r.Method == http.MethodPost && len(params) > 0 {
		w.note += " " + strings.Join(params, " ")
	}
	w.Header().Set("Content-Location", s.base+"/fhir/$export-status/"+j.id)
	w.WriteHeader(http.StatusAccepted)
}

// bulkHasToken reports whether a comma-separated header holds token.
func bulkHasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func bulkAcceptsFHIRJSON(values []string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(t)); err == nil && mt == bulkFHIRJSON {
				return true
			}
		}
	}
	return false
}

// bulkParseParameters reads a FHIR Parameters resource's parameters: each
// value[x] a string, a Reference its reference, anything else its JSON.
func bulkParseParameters(body io.Reader) ([]bulkParam, error) {
	var res struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	data, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("no body")
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	if res.ResourceType != "Parameters" {
		return nil, fmt.Errorf("resourceType %q", res.ResourceType)
	}
	var params []bulkParam
	for _, p := range res.Parameter {
		var name string
		json.Unmarshal(p["name"], &name)
		if name == "" {
			return nil, fmt.Errorf("a parameter without a name")
		}
		value := ""
		for k, raw := range p {
			if !strings.HasPrefix(k, "value") {
				continue
			}
			var str string
			var ref struct {
				Reference string `json:"reference"`
			}
			switch {
			case json.Unmarshal(raw, &str) == nil:
				value = str
			case json.Unmarshal(raw, &ref) == nil && ref.Reference != "":
				value = ref.Reference
			default:
				var buf bytes.Buffer
				json.Compact(&buf, raw)
				value = buf.String()
			}
		}
		params = append(params, bulkParam{name, value})
	}
	return params, nil
}

// readBulkFiles reads the *.ndjson and *.ndjson.gz files directly in dir
// (none when dir is missing and prefix is not "": deleted/, error/); the
// type of each is typ, or when "" the start of its name up to the first ".".
func readBulkFiles(dir, prefix, typ string) ([]*bulkFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if prefix != "" && os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var files []*bulkFile
	for _, e := range entries {
		name := e.Name()
		isGz := strings.HasSuffix(name, ".ndjson.gz")
		if e.IsDir() || !(strings.HasSuffix(name, ".ndjson") || isGz) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		f := &bulkFile{typ: typ, name: prefix + name, plain: data}
		if isGz {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			if f.plain, err = io.ReadAll(zr); err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			f.gz = data
			f.gzETag = bulkETag(data)
		}
		f.etag = bulkETag(f.plain)
		if f.typ == "" {
			f.typ, _, _ = strings.Cut(name, ".")
		}
		for l := range bytes.SplitSeq(f.plain, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				f.count++
			}
		}
		files = append(files, f)
	}
	return files, nil // ReadDir sorts by name
}

func bulkETag(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// status answers a status poll (GET) or cancels a job (DELETE).
func (s *bulkServer) status(w *bulkLogWriter, r *http.Request, a bulkAuth, id string) {
	switch r.Method {
	case http.MethodGet:
		defer func() {
			s.mu.Lock()
			s.bump("polls")
			s.mu.Unlock()
		}()
	case http.MethodDelete:
		s.mu.Lock()
		s.bump("deletes")
		s.mu.Unlock()
	default:
		w.Header().Set("Allow", "GET, DELETE")
		bulkOutcome(w, http.StatusMethodNotAllowed, "not-supported", "a status URL takes GET or DELETE")
		return
	}
	if !a.ok {
		s.unauthorized(w, a)
		return
	}
	s.mu.Lock()
	j := s.jobs[id]
	switch {
	case j == nil:
		s.mu.Unlock()
		w.note = "unknown job"
		bulkOutcome(w, http.StatusNotFound, "not-found", "no export job "+id)
		return
	case j.gone:
		s.mu.Unlock()
		w.note = "deleted job"
		bulkOutcome(w, http.StatusNotFound, "not-found", "export job "+id+" was deleted")
		return
	case j.expired:
		s.mu.Unlock()
		w.note = "expired job"
		bulkOutcome(w, http.StatusNotFound, "not-found", "export job "+id+" has expired")
		return
	}
	if r.Method == http.MethodDelete {
		j.gone = true
		s.mu.Unlock()
		w.note = "deleted"
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var fail string // what to answer instead of the job's state
	switch {
	case s.pollError:
		s.pollError, fail = false, "error"
	case s.pollFailN > 0:
		s.pollFailN--
		fail = "fail"
	case s.pollTransientN > 0:
		s.pollTransientN--
		fail = "transient"
	case s.held:
		fail = "held"
	case j.polls > 0:
		j.polls--
		fail = "in-progress"
	}
	failCode, progress := s.pollFailCode, s.progress
	retryAfter, retryAfterDate, presigned := s.retryAfter, s.retryAfterDate, s.presigned
	s.mu.Unlock()
	switch fail {
	case "error":
		w.note = "poll-error"
		bulkOutcome(w, http.StatusInternalServerError, "exception", "export job failed: disk full")
		return
	case "fail":
		w.note = "poll-fail"
		w.WriteHeader(failCode)
		return
	case "transient":
		w.note = "poll-transient"
		bulkOutcome(w, http.StatusInternalServerError, "transient", "the export job is busy: try again")
		return
	case "held", "in-progress":
		w.note = fail
		if progress != "" {
			w.Header().Set("X-Progress", progress)
		}
		switch {
		case retryAfter < 0:
		case retryAfterDate:
			w.Header().Set("Retry-After", time.Now().Add(time.Duration(retryAfter)*time.Second).UTC().Format(http.TimeFormat))
		default:
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.note = "manifest"
	if presigned {
		w.note += " presigned"
	}
	w.Header().Set("Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	bulkWriteJSON(w, http.StatusOK, s.manifest(j, presigned))
}

type bulkEntry struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count *int   `json:"count,omitempty"`
}

// bulkManifest is the manifest of a job, its fields in the IG's order.
type bulkManifest struct {
	TransactionTime     string      `json:"transactionTime"`
	Request             string      `json:"request"`
	RequiresAccessToken bool        `json:"requiresAccessToken"`
	Output              []bulkEntry `json:"output"`
	Deleted             []bulkEntry `json:"deleted"`
	Error               []bulkEntry `json:"error"`
}

func (s *bulkServer) manifest(j *bulkJob, presigned bool) bulkManifest {
	entries := func(files []*bulkFile) []bulkEntry {
		out := []bulkEntry{}
		for _, f := range files {
			u := s.base + "/fhir/$export-file/" + j.id + "/" + f.name
			if presigned {
				u = s.filesBase + "/files/" + j.id + "/" + f.name + "?sig=" + j.sig
			}
			out = append(out, bulkEntry{Type: f.typ, URL: u, Count: &f.count})
		}
		return out
	}
	m := bulkManifest{
		TransactionTime:     j.txTime,
		Request:             j.request,
		RequiresAccessToken: !presigned,
		Output:              entries(j.outputs),
		Deleted:             entries(j.deleted),
		Error:               entries(j.errors),
	}
	if j.extraURL != "" {
		m.Output = append(m.Output, bulkEntry{Type: "Patient", URL: j.extraURL})
	}
	return m
}

// lookupFile finds a job's file: a status and a reason when it cannot.
func (s *bulkServer) lookupFile(id, name string) (*bulkJob, *bulkFile, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	switch {
	case j == nil:
		return nil, nil, http.StatusNotFound, "unknown job"
	case j.gone:
		return nil, nil, http.StatusNotFound, "deleted job"
	case j.expired:
		return nil, nil, http.StatusGone, "expired job"
	}
	for _, list := range [][]*bulkFile{j.outputs, j.deleted, j.errors} {
		for _, f := range list {
			if f.name == name {
				return j, f, 0, ""
			}
		}
	}
	return nil, nil, http.StatusNotFound, "unknown file"
}

// mainFile serves a file on the main port, with auth.
func (s *bulkServer) mainFile(w *bulkLogWriter, r *http.Request, a bulkAuth, id, name string) {
	s.mu.Lock()
	s.bump("files")
	redirect := s.redirect
	s.mu.Unlock()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		bulkOutcome(w, http.StatusMethodNotAllowed, "not-supported", "a file takes GET")
		return
	}
	if !a.ok {
		s.unauthorized(w, a)
		return
	}
	j, f, code, why := s.lookupFile(id, name)
	if f == nil {
		w.note = why
		bulkOutcome(w, code, "not-found", why+": "+id+"/"+name)
		return
	}
	if redirect {
		w.note = "redirect"
		http.Redirect(w, r, s.filesBase+"/files/"+j.id+"/"+f.name+"?sig="+j.sig, http.StatusTemporaryRedirect)
		return
	}
	s.serveFile(w, r, j, f)
}

// presignedHandler is the second listener's: files with ?sig=, no auth.
func (s *bulkServer) presignedHandler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		auth := "none"
		if r.Header.Get("Authorization") != "" {
			auth = "SENT"
		}
		w := &bulkLogWriter{ResponseWriter: rw, s: s, prefix: fmt.Sprintf("%s %s presigned auth=%s", r.Method, bulkPathQuery(r), auth)}
		defer w.log(http.StatusOK)
		s.mu.Lock()
		s.bump("files")
		s.mu.Unlock()
		rest, ok := strings.CutPrefix(r.URL.Path, "/files/")
		id, name, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			w.note = "no such route"
			bulkOutcome(w, http.StatusNotFound, "not-found", "no such route: "+r.URL.Path)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			bulkOutcome(w, http.StatusMethodNotAllowed, "not-supported", "a file takes GET")
			return
		}
		j, f, code, why := s.lookupFile(id, name)
		if f == nil {
			w.note = why
			bulkOutcome(w, code, "not-found", why+": "+id+"/"+name)
			return
		}
		if r.URL.Query().Get("sig") != j.sig {
			w.note = "bad sig"
			bulkOutcome(w, http.StatusForbidden, "forbidden", "signature mismatch")
			return
		}
		s.serveFile(w, r, j, f)
	})
}

// serveFile sends a file with http.ServeContent (Range, If-Range, ETag),
// held halfway when hold-file names it.
func (s *bulkServer) serveFile(w *bulkLogWriter, r *http.Request, j *bulkJob, f *bulkFile) {
	body, etag := f.plain, f.etag
	if f.gz != nil {
		w.Header().Add("Vary", "Accept-Encoding")
		if bulkHasGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = f.gz, f.gzETag
			w.Header().Set("Content-Encoding", "gzip")
		}
	}
	w.Header().Set("Content-Type", bulkNDJSON)
	w.Header().Set("ETag", etag)
	var notes []string
	if rg := r.Header.Get("Range"); rg != "" {
		notes = append(notes, "range="+rg)
	}
	if ir := r.Header.Get("If-Range"); ir != "" {
		notes = append(notes, "if-range")
	}
	s.mu.Lock()
	hold := r.Method == http.MethodGet && s.holdFile == f.name
	gate := s.fileGate
	s.mu.Unlock()
	var out http.ResponseWriter = w
	if hold {
		notes = append(notes, "hold")
		out = &bulkHoldWriter{ResponseWriter: w, s: s, ctx: r.Context(), gate: gate, half: -1}
	}
	w.note = strings.Join(notes, " ")
	http.ServeContent(out, r, "", j.started, bytes.NewReader(body))
}

func bulkHasGzip(values []string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			coding, q, _ := strings.Cut(strings.TrimSpace(t), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// bulkHoldWriter sends the first half of a body, flushes, and waits for
// its gate (or the client to go away) before the rest.
type bulkHoldWriter struct {
	http.ResponseWriter
	s       *bulkServer
	ctx     context.Context
	gate    <-chan struct{}
	half    int64 // -1 until the first Write
	written int64
	done    bool
}

func (h *bulkHoldWriter) Write(p []byte) (int, error) {
	if h.done {
		return h.ResponseWriter.Write(p)
	}
	if h.half < 0 {
		cl, _ := strconv.ParseInt(h.Header().Get("Content-Length"), 10, 64)
		h.half = cl / 2
	}
	if h.written+int64(len(p)) < h.half {
		n, err := h.ResponseWriter.Write(p)
		h.written += int64(n)
		return n, err
	}
	k := h.half - h.written
	n, err := h.ResponseWriter.Write(p[:k])
	if err != nil {
		return n, err
	}
	http.NewResponseController(h.ResponseWriter).Flush()
	h.done = true
	h.s.mu.Lock()
	h.s.heldNow++
	h.s.notify()
	h.s.mu.Unlock()
	defer func() {
		h.s.mu.Lock()
		h.s.heldNow--
		h.s.notify()
		h.s.mu.Unlock()
	}()
	select {
	case <-h.gate:
	case <-h.ctx.Done():
		return n, h.ctx.Err()
	}
	m, err := h.ResponseWriter.Write(p[k:])
	return n + m, err
}

// bulkKeys are the test client's keys: rsa1, ec1 (P-384) and rsa2
// registered, wrong (RSA) and p256 (EC P-256) not.
type bulkKeys struct {
	rsa1, rsa2, wrong *rsa.PrivateKey
	ec1, p256         *ecdsa.PrivateKey
}

func newBulkKeys() (*bulkKeys, error) {
	var k bulkKeys
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa1, &k.rsa2, &k.wrong} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, err
		}
	}
	if k.ec1, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	return &k, nil
}

// private are the registered keys as private JWKs.
func (k *bulkKeys) private() (rsa1, ec1, rsa2 jose.JSONWebKey) {
	return jose.JSONWebKey{Key: k.rsa1, KeyID: "rsa1", Algorithm: string(jose.RS384), Use: "sig"},
		jose.JSONWebKey{Key: k.ec1, KeyID: "ec1", Algorithm: string(jose.ES384), Use: "sig"},
		jose.JSONWebKey{Key: k.rsa2, KeyID: "rsa2", Algorithm: string(jose.RS384), Use: "sig"}
}

// registered is the public JWKS of client fhirbulk-test.
func (k *bulkKeys) registered() []jose.JSONWebKey {
	rsa1, ec1, rsa2 := k.private()
	return []jose.JSONWebKey{rsa1.Public(), ec1.Public(), rsa2.Public()}
}

// write puts the client's key files in dir.
func (k *bulkKeys) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1 := func(key *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	js := func(v any) []byte {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			panic(err)
		}
		return append(b, '\n')
	}
	rsa1, ec1, rsa2 := k.private()
	files := map[string][]byte{
		"rsa.pem":              pkcs8(k.rsa1),
		"rsa1.jwk.json":        js(rsa1),
		"ec.pem":               sec1(k.ec1),
		"ec.jwks.json":         js(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{ec1, rsa2}}),
		"wrong.pem":            pkcs8(k.wrong),
		"p256.pem":             sec1(k.p256),
		"registered.jwks.json": js(jose.JSONWebKeySet{Keys: k.registered()}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
