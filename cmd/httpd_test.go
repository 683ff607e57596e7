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
		"httpd": cmdHTTPD,
	}
}

// httpd starts an HTTP server for this script, serving files of $WORK, and
// sets $HTTP to its base URL. The path's first segment picks a behaviour:
//
//	/files/NAME         the file, with Range support (http.ServeContent)
//	/flaky/NAME         503 (Retry-After: 0) twice, then the file
//	/busy/NAME          429 with Retry-After: 1 once, then the file
//	/down/NAME          always 503 (Retry-After: 0)
//	/drop/NAME          the first response breaks off halfway; Range works
//	/drop-norange/NAME  the first response breaks off halfway, no Range
//	/signed/NAME        the file only with ?sig=s3cr3t-signature, else 403
//	/slow/NAME          the file, 1 KiB every 50 ms
//	/status/CODE        that status
//
// Every request is logged to $WORK/http.log as "METHOD PATH?QUERY RANGE".
func cmdHTTPD(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.MkAbs(".")
	var mu sync.Mutex
	hits := map[string]int{}
	logf, err := os.Create(filepath.Join(work, "http.log"))
	ts.Check(err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		fmt.Fprintf(logf, "%s %s %s\n", r.Method, r.URL.RequestURI(), r.Header.Get("Range"))
		mu.Unlock()
		kind, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		serve := func() {
			f, err := os.Open(filepath.Join(work, filepath.FromSlash(name)))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			defer f.Close()
			st, _ := f.Stat()
			http.ServeContent(w, r, name, st.ModTime(), f)
		}
		breakOff := func(ranges bool) {
			data, err := os.ReadFile(filepath.Join(work, filepath.FromSlash(name)))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			if ranges {
				w.Header().Set("Accept-Ranges", "bytes")
				w.Header().Set("Last-Modified", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat))
			}
			w.WriteHeader(http.StatusOK)
			w.Write(data[:len(data)/2]) //nolint:errcheck
			w.(http.Flusher).Flush()
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
				breakOff(true)
				return
			}
			serve()
		case "drop-norange":
			if n == 1 {
				breakOff(false)
				return
			}
			w.Header().Set("Accept-Ranges", "none")
			data, _ := os.ReadFile(filepath.Join(work, filepath.FromSlash(name)))
			w.Write(data) //nolint:errcheck
		case "signed":
			if r.URL.Query().Get("sig") != "s3cr3t-signature" {
				http.Error(w, "signature mismatch", http.StatusForbidden)
				return
			}
			serve()
		case "slow":
			data, err := os.ReadFile(filepath.Join(work, filepath.FromSlash(name)))
			if err != nil {
				http.NotFound(w, r)
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
		case "status":
			code, _ := strconv.Atoi(name)
			http.Error(w, "status", code)
		default:
			http.NotFound(w, r)
		}
	}))
	ts.Defer(func() {
		srv.CloseClientConnections()
		srv.Close()
		logf.Close()
	})
	ts.Setenv("HTTP", srv.URL)
	// A port where nothing listens, for "unreachable".
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	ts.Setenv("DEADHTTP", "http://"+l.Addr().String())
	l.Close()
}
