package cmd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// waitLimit bounds the wait commands: far beyond what a condition takes on
// a loaded machine, so that they fail only when it never holds.
const waitLimit = 60 * time.Second

// waitfile GLOB REGEXP waits (up to waitLimit) until a file matching GLOB (in
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
	deadline := time.Now().Add(waitLimit)
	for {
		names, _ := filepath.Glob(pattern)
		for _, name := range names {
			// A file may be renamed or removed between Glob and ReadFile: look again next time.
			if data, err := os.ReadFile(name); err == nil && re.Match(data) {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfile: no file matching %s holds %q after %v (files: %q)", args[0], args[1], waitLimit, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitexec REGEXP PROG [ARGS...] runs PROG again and again (whatever its
// exit status) until its stdout matches REGEXP (multi-line, as stdout's),
// up to waitLimit; then stdout and stderr are those of the run that
// matched, for the assertions after it. For waiting on what a command
// reports ("waitexec '"status": "failed"' fhirbulk status ID --json")
// rather than sleeping.
func cmdWaitExec(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: waitexec REGEXP PROG [ARGS...]")
	}
	re, err := regexp.Compile("(?m)" + args[0])
	ts.Check(err)
	deadline := time.Now().Add(waitLimit)
	for {
		ts.Exec(args[1], args[2:]...) // the output decides, not the exit status
		if re.MatchString(ts.ReadFile("stdout")) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitexec: %s printed nothing matching %q in %v", args[1], args[0], waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitcode N PROG [ARGS...] runs PROG as exec does (stdin from a stdin
// command before it; stdout and stderr kept for the assertions after it)
// and fails unless PROG exited with status N, naming the status it had
// (its stderr is in the log just above, as exec's). It takes the place of
// `exec sh -c 'PROG ARGS; echo "exit $?"'` and `stdout '^exit N$'`.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exitcode N PROG [ARGS...] (no !: N says what is expected)")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil || want < 0 || want > 255 {
		ts.Fatalf("exitcode: bad status %q: want 0 to 255", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			ts.Fatalf("exitcode: %s did not run: %v", args[1], err)
		}
		got = exit.ExitCode() // -1 when a signal ended it
		if got < 0 {
			ts.Fatalf("exitcode: %s ended by %v, want exit status %d%s", args[1], exit.ProcessState, want, stderrNote(ts))
		}
	}
	if got != want {
		ts.Fatalf("exitcode: %s exited with status %d, want %d%s", args[1], got, want, stderrNote(ts))
	}
}

// stderrNote points at the stderr that ts.Exec logged, or says there was none.
func stderrNote(ts *testscript.TestScript) string {
	if ts.ReadFile("stderr") == "" {
		return " (nothing on stderr)"
	}
	return " (its stderr is above)"
}
