package cmd

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// httpdCmds are the script commands of the HTTP test server.
func httpdCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"httpd":       cmdHTTPD,
		"httprelease": cmdHTTPRelease,
	}
}

// httpdHolds holds each running script's /hold gates. It is package state
// only because a script command has no other way to reach what an earlier
// command (httpd) made; it is keyed by script, so parallel scripts never
// share an entry.
var httpdHolds sync.Map // *testscript.TestScript → *holds

// httpd starts an HTTP server for this script, serving files of $WORK, and
// sets $HTTP to its base URL and $HTTPHOST to its host:port. A second
// server, another host as far as a client knows, serves the same at $HTTP2.
// The path's first segment picks a behaviour:
//
//	/files/NAME         the file, with Range support (http.ServeContent)
//	/flaky/NAME         503 (Retry-After: 0) twice, then the file
//	/busy/NAME          429 with Retry-After: 1 once, then the file
//	/down/NAME          always 503 (Retry-After: 0)
//	/drop/NAME          the first response breaks off halfway; Range works
//	                    (Accept-Ranges and Last-Modified, so If-Range matches)
//	/drop-norange/NAME  the first response breaks off halfway, no Range
//	/drop-change/NAME   Range without a validator (no ETag, no Last-Modified);
//	                    the first response breaks off halfway, and every later
//	                    request gets the file NAME.v2 instead, as if NAME had
//	                    been replaced in between
//	/signed/NAME        the file only with ?sig=s3cr3t-signature, else 403
//	/slow/NAME          the file, 1 KiB every 50 ms
//	/stall/NAME         Range works (with Last-Modified); every response sends
//	                    the first half of what was asked (the file, or the
//	                    rest of it from the Range), then holds the connection
//	                    open, silent, until the client goes away
//	/stall-norange/NAME the same without Range: the first half of the file,
//	                    then silence until the client goes away
//	/hold/NAME          the first half of the file, then waits for the script
//	                    to run "httprelease NAME" (or the client to go away),
//	                    then the rest; no Range
//	/redirect/NAME      302 to the other server's /files/NAME ($HTTP to
//	                    $HTTP2 and back), no query string
//	/status/CODE        that status
//	/ansi/NAME          418 with a reason phrase holding terminal escape sequences
//
// Every request to $HTTP is logged to $WORK/http.log (to $HTTP2: http2.log)
// as "METHOD PATH?QUERY RANGE", and " referer=REFERER" after that when the
// request has a Referer header.
func cmdHTTPD(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.MkAbs(".")
	gates := &holds{ch: map[string]chan struct{}{}}
	httpdHolds.Store(ts, gates)
	var servers [2]*httptest.Server
	for i, logName := range []string{"http.log", "http2.log"} {
		logf, err := os.Create(filepath.Join(work, logName))
		ts.Check(err)
		h := &httpdHandler{work: work, log: logf, hits: map[string]int{}, holds: gates}
		servers[i] = httptest.NewUnstartedServer(h)
		ts.Defer(func() {
			servers[i].CloseClientConnections()
			servers[i].Close()
			logf.Close()
		})
	}
	for i, srv := range servers {
		srv.Config.Handler.(*httpdHandler).other = "http://" + servers[1-i].Listener.Addr().String()
	}
	for _, srv := range servers {
		srv.Start()
	}
	ts.Defer(func() { httpdHolds.Delete(ts) })
	ts.Setenv("HTTP", servers[0].URL)
	ts.Setenv("HTTPHOST", strings.TrimPrefix(servers[0].URL, "http://"))
	ts.Setenv("HTTP2", servers[1].URL)
	// A port where nothing listens, for "unreachable".
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	ts.Setenv("DEADHTTP", "http://"+l.Addr().String())
	l.Close()
}

// httprelease NAME lets every /hold/NAME request of this script's httpd go
// on, those waiting now and those still to come.
func cmdHTTPRelease(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: httprelease NAME")
	}
	gates, ok := httpdHolds.Load(ts)
	if !ok {
		ts.Fatalf("httprelease: no httpd in this script")
	}
	gates.(*holds).release(args[0])
}

// holds are the gates of /hold/NAME, one per NAME, made on first use by
// whichever comes first: the request or httprelease.
type holds struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func (h *holds) gate(name string) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.ch[name]
	if !ok {
		c = make(chan struct{})
		h.ch[name] = c
	}
	return c
}

func (h *holds) release(name string) {
	c := h.gate(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

type httpdHandler struct {
	work  string
	other string // the other server's base URL
	holds *holds
	mu    sync.Mutex
	hits  map[string]int
	log   *os.File
}

func (h *httpdHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.hits[r.URL.Path]++
	n := h.hits[r.URL.Path]
	line := fmt.Sprintf("%s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("Range"))
	if ref := r.Header.Get("Referer"); ref != "" {
		line += " referer=" + ref
	}
	fmt.Fprintln(h.log, line)
	h.mu.Unlock()
	kind, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	path := filepath.Join(h.work, filepath.FromSlash(name))
	serve := func() {
		f, err := os.Open(path)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		http.ServeContent(w, r, name, st.ModTime(), f)
	}
	read := func() ([]byte, time.Time, bool) {
		data, err := os.ReadFile(path)
		st, err2 := os.Stat(path)
		if err != nil || err2 != nil {
			http.NotFound(w, r)
			return nil, time.Time{}, false
		}
		return data, st.ModTime(), true
	}
	// firstHalf sends the headers and the first half of data.
	firstHalf := func(data []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
	}
	breakOff := func(ranges, validator bool) {
		data, mod, ok := read()
		if !ok {
			return
		}
		if ranges {
			w.Header().Set("Accept-Ranges", "bytes")
		}
		if validator {
			w.Header().Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
		}
		firstHalf(data)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	switch kind {
	case "files":
		serve()
	case "flaky":
		if n <= 2 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		serve()
	case "busy":
		if n <= 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		serve()
	case "down":
		w.Header().Set("Retry-After", "0")
		http.Error(w, "down", http.StatusServiceUnavailable)
	case "drop":
		if n == 1 {
			breakOff(true, true)
			return
		}
		serve()
	case "drop-norange":
		if n == 1 {
			breakOff(false, false)
			return
		}
		w.Header().Set("Accept-Ranges", "none")
		data, _ := os.ReadFile(path)
		w.Write(data)
	case "drop-change":
		if n == 1 {
			breakOff(true, false)
			return
		}
		f, err := os.Open(path + ".v2")
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, name, time.Time{}, f) // no modtime: no Last-Modified
	case "signed":
		if r.URL.Query().Get("sig") != "s3cr3t-signature" {
			http.Error(w, "signature mismatch", http.StatusForbidden)
			return
		}
		serve()
	case "slow":
		data, _, ok := read()
		if !ok {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		for len(data) > 0 {
			n := min(len(data), 1024)
			if _, err := w.Write(data[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			data = data[n:]
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	case "stall":
		data, mod, ok := read()
		if !ok {
			return
		}
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Last-Modified", mod.UTC().Format(http.TimeFormat))
		from := 0
		if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
			from, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
			from = min(max(from, 0), len(data))
		}
		rest := data[from:]
		if from > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(rest)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(rest[:len(rest)/2])
			w.(http.Flusher).Flush()
		} else {
			firstHalf(data)
		}
		<-r.Context().Done()
	case "stall-norange":
		data, _, ok := read()
		if !ok {
			return
		}
		firstHalf(data)
		<-r.Context().Done()
	case "hold":
		data, _, ok := read()
		if !ok {
			return
		}
		firstHalf(data)
		select {
		case <-h.holds.gate(name):
		case <-r.Context().Done():
			return
		}
		w.Write(data[len(data)/2:])
	case "redirect":
		http.Redirect(w, r, h.other+"/files/"+name, http.StatusFound)
	case "status":
		code, _ := strconv.Atoi(name)
		http.Error(w, "status", code)
	case "ansi":
		// A reason phrase no net/http server would send: written by hand.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Write([]byte("HTTP/1.1 418 \x1b[31mI'm a teapot\x1b[0m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			conn.Close()
		}
	default:
		http.NotFound(w, r)
	}
}
