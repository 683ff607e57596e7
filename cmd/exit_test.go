package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// TestExitStatus pins exitStatus to the help's "Exit status" text: 0
// success, 1 failure, 2 usage error, 130 interrupted, 141 broken pipe, and
// status ID's own 1 and 3.
func TestExitStatus(t *testing.T) {
	_, cfgErr := pg.ParseDSN("mysql://h/d")
	var ce *pg.ConfigError
	if !errors.As(cfgErr, &ce) {
		t.Fatalf("ParseDSN(mysql://): %v, not a *pg.ConfigError", cfgErr)
	}
	partial := &load.PartialError{Committed: []string{"a.ndjson"}, Counts: []int64{3}, NotLoaded: []string{"b.ndjson"}, Err: context.Canceled}
	ran := ending{ran: true, command: "fhirbulk dump"}
	for _, c := range []struct {
		name string
		err  error
		e    ending
		code int
		msg  string
	}{
		{"success", nil, ran, 0, ""},
		{"failure", errors.New("no table"), ran, 1, "fhirbulk: no table\n"},
		{"failure, wrapped", fmt.Errorf("dump: %w", os.ErrNotExist), ran, 1, "fhirbulk: dump: file does not exist\n"},
		{"failure, one line", errors.New("a\n  b"), ran, 1, "fhirbulk: a b\n"},
		{"usage error", usagef("--parallel: must be at least 1"), ran, 2, "fhirbulk: --parallel: must be at least 1\nRun 'fhirbulk dump --help' for usage.\n"},
		{"bad connection string", fmt.Errorf("x: %w", cfgErr), ran, 2, "fhirbulk: x: " + cfgErr.Error() + " (--db, DATABASE_URL)\nRun 'fhirbulk dump --help' for usage.\n"},
		{"import failed", &bulkimport.FailedError{ID: "web", Failed: 1, Inputs: 3}, ran, 1, "fhirbulk: import web failed: 1 of 3 inputs failed (fhirbulk status web)\n"},
		{"before the command ran", errors.New("unknown flag: --x"), ending{command: "fhirbulk dump"}, 2, "fhirbulk: unknown flag: --x\nRun 'fhirbulk dump --help' for usage.\n"},
		{"interrupted", context.Canceled, ending{interrupted: true, ran: true}, 130, "fhirbulk: interrupted\n"},
		{"interrupted, any error", errors.New("read: closed"), ending{interrupted: true, ran: true}, 130, "fhirbulk: interrupted\n"},
		{"interrupted load of several", partial, ending{interrupted: true, ran: true}, 130, "fhirbulk: " + errorLine(partial) + "\n"},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), ran, 141, ""},
		{"status ID: failed", &exitError{code: exitFailure, err: &bulkimport.FailedError{ID: "x", Failed: 1, Inputs: 2}}, ran, 1, "fhirbulk: import x failed: 1 of 2 inputs failed\n"},
		{"status ID: interrupted", &exitError{code: exitImportInterrupted, err: errors.New("import x was interrupted")}, ran, 3, "fhirbulk: import x was interrupted\n"},
		{"status --watch stopped", &exitError{code: exitInterrupted}, ending{interrupted: true, ran: true}, 130, ""},
	} {
		code, msg := exitStatus(c.err, c.e)
		if code != c.code || msg != c.msg {
			t.Errorf("%s: exitStatus = %d %q, want %d %q", c.name, code, msg, c.code, c.msg)
		}
	}
}
