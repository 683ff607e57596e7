package cmd

import (
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// waitfile GLOB REGEXP waits (up to 30 s) until a file matching GLOB (in
// $WORK) holds text that REGEXP (multi-line, as stdout's) matches: for
// waiting on what a background command writes rather than sleeping, such
// as a request in the HTTP server's log ("waitfile http.log '^GET /hold/'"),
// an input's status in a state file, or data in an -o file's temporary
// name ("waitfile 'out/.x.ndjson.*.tmp' .").
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: waitfile GLOB REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	pattern := ts.MkAbs(args[0])
	if _, err := filepath.Match(pattern, ""); err != nil {
		ts.Fatalf("waitfile: bad pattern %q: %v", args[0], err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		names, _ := filepath.Glob(pattern)
		for _, name := range names {
			// A file may be renamed or removed between Glob and ReadFile: look again next time.
			if data, err := os.ReadFile(name); err == nil && re.Match(data) {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfile: no file matching %s holds %q after 30s (files: %q)", args[0], args[1], names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
