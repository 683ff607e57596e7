package cmd

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// Exit statuses, as every command's help ends (exitStatusHelp) and status
// ID's help adds (3).
const (
	exitOK                = 0
	exitFailure           = 1
	exitUsage             = 2
	exitImportInterrupted = 3   // status ID: the import was interrupted
	exitInterrupted       = 130 // Ctrl-C
	exitBrokenPipe        = 141 // as if killed by SIGPIPE, like `yes | head`
)

// exitError is an error that asks for an exit status of its own (status:
// 3 for an interrupted import), or, with no err, a status and nothing
// more said (what there was to say is said).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "interrupted"
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// ending is how a run ended, as exitStatus needs to know it besides the
// error: whether the context was cancelled (Ctrl-C), whether the command's
// own code started (errors before it are usage errors), and the command's
// path for the usage hint, and whether it has --force (for the hint of an
// output that exists).
type ending struct {
	interrupted bool
	ran         bool
	command     string
	force       bool
}

// exitStatus is the one mapping from a command's error to the exit status
// and what is printed on stderr (empty, or whole lines). It is the help's
// "Exit status" text:
//
//   - 0: no error.
//   - an *exitError: its status, and its message if it has one, as it is,
//     with no hint (status ID: 1 failed, 3 interrupted; --watch stopped by
//     Ctrl-C: 130, silently).
//   - 130: interrupted (Ctrl-C, SIGTERM): "interrupted", or what a load of
//     several sources committed before.
//   - 141: a broken pipe on stdout: nothing said, as `yes | head`.
//   - 2: a usage error (usageError, a bad connection string, or any error
//     before the command's own code ran), with a pointer to --help.
//   - 1: any other failure.
func exitStatus(err error, e ending) (int, string) {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		if ee.err == nil {
			return ee.code, ""
		}
		return ee.code, "fhirbulk: " + errorLine(ee.err) + "\n"
	case err == nil:
		return exitOK, ""
	case e.interrupted:
		var pe *load.PartialError
		if errors.As(err, &pe) && pe.Interrupted() {
			return exitInterrupted, "fhirbulk: " + message(pe, e.force) + "\n"
		}
		return exitInterrupted, "fhirbulk: interrupted\n"
	case errors.Is(err, syscall.EPIPE):
		return exitBrokenPipe, ""
	}
	var ue usageError
	var ce *pg.ConfigError
	if errors.As(err, &ue) || errors.As(err, &ce) || !e.ran {
		return exitUsage, fmt.Sprintf("fhirbulk: %s\nRun '%s --help' for usage.\n", message(err, e.force), e.command)
	}
	return exitFailure, "fhirbulk: " + message(err, e.force) + "\n"
}
