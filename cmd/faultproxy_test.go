package cmd

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// faultCmds are the script commands of the fault proxy: a store that
// misbehaves on purpose, in front of a real one.
func faultCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"faultproxy": cmdFaultProxy,
		"fault":      cmdFault,
	}
}

// faultProxies holds each running script's proxy (a script command has no
// other way to reach what an earlier one made); keyed by script.
var faultProxies sync.Map // *testscript.TestScript → *faultProxy

// faultproxy TARGET starts a reverse proxy on a free port of 127.0.0.1 in
// front of TARGET (an S3 server's URL, say $S3ENDPOINT), and points
// AWS_ENDPOINT_URL (and $FAULTS) at it. It passes every request on as it
// came (the Host header kept, so a signature still matches) until told by
// "fault" to misbehave. Every request is logged to $WORK/faults.log as
// "METHOD PATH?QUERY" (X-Amz-* parameters left out; " range=RANGE" and
// " if-match" when the request has those headers) followed by what the
// proxy did: "-> pass", "-> 503", "-> cut N", "-> held", ...
func cmdFaultProxy(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: faultproxy TARGET")
	}
	target, err := url.Parse(args[0])
	if err != nil || target.Host == "" {
		ts.Fatalf("faultproxy: bad TARGET %q", args[0])
	}
	logf, err := os.Create(ts.MkAbs("faults.log"))
	ts.Check(err)
	p := &faultProxy{log: logf, released: make(chan struct{})}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // signed: the store checks it
		},
		// A request the client gave up on is what these tests are about.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	srv := &http.Server{Handler: p}
	go srv.Serve(l)
	ts.Defer(func() {
		p.release()
		srv.Close()
		logf.Close()
	})
	faultProxies.Store(ts, p)
	ts.Defer(func() { faultProxies.Delete(ts) })
	u := "http://" + l.Addr().String()
	ts.Setenv("FAULTS", u)
	ts.Setenv("AWS_ENDPOINT_URL", u)
}

// fault RULE [N] tells the script's proxy how to misbehave next:
//
//	slowdown N     the next N requests get 503 SlowDown (S3's throttling)
//	cut-read N     the next GET of an object is cut off after N bytes of body
//	cut-part N     the next upload of a part (PUT with partNumber) is cut off
//	               after N bytes of its body are read: no answer, the
//	               connection closed
//	expire         every later request gets 400 ExpiredToken
//	hold TEXT      the next PUT of a part or an object whose path holds TEXT
//	               is held (logged "-> held") until "fault release" or the
//	               client goes away
//	release        lets a held request go on
//	clear          back to passing everything
func cmdFault(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: fault RULE [N]")
	}
	v, ok := faultProxies.Load(ts)
	if !ok {
		ts.Fatalf("fault: no faultproxy in this script")
	}
	p := v.(*faultProxy)
	n := 0
	if args[0] == "hold" {
		if len(args) != 2 {
			ts.Fatalf("usage: fault hold TEXT")
		}
		p.mu.Lock()
		p.hold = args[1]
		p.released = make(chan struct{})
		p.mu.Unlock()
		return
	}
	if len(args) > 1 {
		var err error
		if n, err = strconv.Atoi(args[1]); err != nil {
			ts.Fatalf("fault %s: bad N %q", args[0], args[1])
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch args[0] {
	case "slowdown":
		p.slowdown = n
	case "cut-read":
		p.cutRead = n
	case "cut-part":
		p.cutPart = n
	case "expire":
		p.expired = true
	case "release":
		select {
		case <-p.released:
		default:
			close(p.released)
		}
	case "clear":
		p.slowdown, p.cutRead, p.cutPart, p.expired, p.hold = 0, 0, 0, false, ""
	default:
		ts.Fatalf("fault: unknown rule %q", args[0])
	}
}

type faultProxy struct {
	rp  *httputil.ReverseProxy
	log *os.File

	mu       sync.Mutex
	slowdown int
	cutRead  int
	cutPart  int
	expired  bool
	hold     string // hold the next PUT whose path holds it
	released chan struct{}
}

func (p *faultProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.released:
	default:
		close(p.released)
	}
}

func (p *faultProxy) logf(r *http.Request, format string, args ...any) {
	q := r.URL.Query()
	for k := range q {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-") || k == "x-id" {
			q.Del(k)
		}
	}
	line := r.Method + " " + r.URL.Path
	if len(q) > 0 {
		line += "?" + q.Encode()
	}
	if rg := r.Header.Get("Range"); rg != "" {
		line += " range=" + rg
	}
	if im := r.Header.Get("If-Match"); im != "" {
		line += " if-match"
	}
	p.mu.Lock()
	fmt.Fprintf(p.log, "%s -> %s\n", line, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	isPart := r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
	isPut := r.Method == http.MethodPut && len(strings.Split(strings.Trim(r.URL.Path, "/"), "/")) > 1
	isGet := r.Method == http.MethodGet && len(strings.Split(strings.Trim(r.URL.Path, "/"), "/")) > 1
	p.mu.Lock()
	var action string
	var n int
	switch {
	case p.expired:
		action = "expired"
	case p.slowdown > 0:
		p.slowdown--
		action = "503"
	case isPart && p.cutPart > 0:
		action, n, p.cutPart = "cut-part", p.cutPart, 0
	case isGet && p.cutRead > 0:
		action, n, p.cutRead = "cut-read", p.cutRead, 0
	case (isPart || isPut) && p.hold != "" && strings.Contains(r.URL.Path, p.hold):
		action, p.hold = "hold", ""
	}
	released := p.released
	p.mu.Unlock()
	switch action {
	case "expired":
		p.logf(r, "400 ExpiredToken")
		s3Fault(w, http.StatusBadRequest, "ExpiredToken", "The provided token has expired.")
	case "503":
		p.logf(r, "503")
		s3Fault(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case "cut-part":
		p.logf(r, "cut %d", n)
		io.CopyN(io.Discard, r.Body, int64(n))
		hijackClose(w)
	case "cut-read":
		p.logf(r, "cut %d", n)
		p.rp.ServeHTTP(&cutWriter{ResponseWriter: w, left: n}, r)
	case "hold":
		p.logf(r, "held")
		select {
		case <-released:
		case <-r.Context().Done():
			return
		}
		p.logf(r, "released")
		p.rp.ServeHTTP(w, r)
	default:
		p.logf(r, "pass")
		p.rp.ServeHTTP(w, r)
	}
}

// s3Fault answers as S3 does when it refuses a request.
func s3Fault(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

// hijackClose drops the connection without an answer.
func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// cutWriter passes left bytes of the body on, then breaks the connection.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) <= c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	c.ResponseWriter.Write(p[:c.left])
	c.left = 0
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler) // the connection drops mid-body
}
