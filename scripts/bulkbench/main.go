// Command bulkbench serves a folder of ndjson files as a Bulk Data $export
// on 127.0.0.1 for scripts/bench.sh: a kick-off answers 202 at once, the
// status URL the manifest (every *.ndjson of the folder, its type the part
// of its name before the first dot), and the files are served from disk
// (http.ServeContent: Range, ETag) to a request with the bearer token
// "bench", as requiresAccessToken says (and without it under /open/). It measures fhirbulk's side of a
// pull: the protocol is a few requests, the files are the work. It prints
// its FHIR base on stdout, then serves until killed.
// Usage: go run ./scripts/bulkbench DIR
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bulkbench DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bulkbench:", err)
		os.Exit(1)
	}
	base := "http://" + l.Addr().String()
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer bench" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return false
		}
		return true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/$export", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			w.Header().Set("Content-Location", base+"/fhir/status/1")
			w.WriteHeader(http.StatusAccepted)
		}
	})
	mux.HandleFunc("GET /fhir/status/1", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(w, r) {
			return
		}
		names, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
		sort.Strings(names)
		type file struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		}
		m := struct {
			TransactionTime     string `json:"transactionTime"`
			Request             string `json:"request"`
			RequiresAccessToken bool   `json:"requiresAccessToken"`
			Output              []file `json:"output"`
			Error               []file `json:"error"`
		}{time.Now().UTC().Format(time.RFC3339Nano), base + "/fhir/$export", true, []file{}, []file{}}
		for _, n := range names {
			name := filepath.Base(n)
			m.Output = append(m.Output, file{Type: strings.SplitN(name, ".", 2)[0], URL: base + "/files/" + name})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	})
	mux.HandleFunc("DELETE /fhir/status/1", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			w.WriteHeader(http.StatusAccepted)
		}
	})
	files := func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(dir, filepath.Base(r.PathValue("name"))))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, _ := f.Stat()
		w.Header().Set("Content-Type", "application/fhir+ndjson")
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
		http.ServeContent(w, r, "", fi.ModTime(), f)
	}
	mux.HandleFunc("GET /files/{name}", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			files(w, r)
		}
	})
	// The same files without a token: what a plain file server is, for
	// load and serve's $load.
	mux.HandleFunc("GET /open/{name}", files)
	fmt.Println(base + "/fhir")
	os.Stdout.Sync()
	if err := http.Serve(l, mux); err != nil {
		fmt.Fprintln(os.Stderr, "bulkbench:", err)
		os.Exit(1)
	}
}
