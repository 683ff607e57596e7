// Package cmd is fhirbulk's command line: it parses flags, opens the
// connection and the input/output streams, and calls into pkg/. Errors are
// printed here, once, as one line.
package cmd

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// app is one run of the command line: its streams, environment and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	db    string
	quiet bool

	ran bool // a command's own code started (errors before it are usage errors)
}

// Run is the whole program: Main on the process's streams, with Ctrl-C (or
// SIGTERM) cancelling the context. A second signal kills at once.
func Run() int {
	// Nothing of fhirbulk logs through the standard logger; the AWS
	// transfer manager does (an upload it could not complete, which
	// fhirbulk says itself, in one line), between fhirbulk's own lines.
	log.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
}

// Main runs fhirbulk with args (without the program name) and returns the
// exit status. The command tree is built anew on every call.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	c, err := root.ExecuteContextC(ctx)
	code, msg := exitStatus(err, ending{interrupted: ctx.Err() != nil, ran: a.ran, command: c.CommandPath(), force: c.Flags().Lookup("force") != nil})
	fmt.Fprint(stderr, msg)
	return code
}

// errorLine is an error as the one line a person is shown: spaces and line
// breaks made single spaces, any URL's password and query string taken out
// (whichever layer let one through), control characters escaped.
func errorLine(err error) string {
	return printable(oneLine(source.RedactText(err.Error())))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.TrimSpace(s)), " ")
}

const rootLong = `fhirbulk moves FHIR resources in bulk between PostgreSQL (Aidbox storage
layout) and ndjson streams.

The database is --db URL, else $DATABASE_URL, else the libpq variables
(PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ~/.pgpass).

Data goes to stdout, everything else to stderr. Progress bars are drawn
only when stderr is a terminal.`

// exitStatusHelp ends every command's help.
const exitStatusHelp = `
Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C).
A reader that goes away ("fhirbulk dump Patient | head") ends fhirbulk
quietly, killed by SIGPIPE (status 141), as "yes | head" ends yes.
`

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "fhirbulk",
		Short:         "Bulk export and import of FHIR resources in PostgreSQL",
		Long:          rootLong,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("fhirbulk {{.Version}}\n")
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true // ours, completionCmd, says which shells
	root.SetHelpTemplate(root.HelpTemplate() + exitStatusHelp)
	pf := root.PersistentFlags()
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "no progress bars or summary lines")
	// Also taken before the command ("fhirbulk --db URL dump Patient"), but
	// listed only by the commands that use a database (dbFlag).
	pf.StringVar(&a.db, "db", "", "")
	pf.MarkHidden("db") // the flag exists
	root.AddCommand(a.dumpCmd(), a.dumpSQLCmd(), a.exportCmd(), a.typesCmd(), a.loadCmd(), a.importCmd(), a.statusCmd(), a.convertCmd(), a.serveCmd())
	root.AddCommand(a.completionCmd(root))
	return root
}

// exactArgs is cobra.ExactArgs with a message that names what is missing.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d arguments)", c.Name(), names, len(args))
		}
		return nil
	}
}

// version is the module version, or the commit the binary was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		v = rev[:min(12, len(rev))]
		if dirty {
			v += "+dirty"
		}
	}
	return v + " (" + info.GoVersion + ")"
}

// run wraps a command's body: it marks that argument parsing is over (so its
// errors are not usage errors unless they say so).
func (a *app) run(body func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		a.ran = true
		return body(c.Context(), args)
	}
}

// dbFlag gives c, a command that uses the database, the --db flag.
func (a *app) dbFlag(c *cobra.Command) {
	c.Flags().StringVar(&a.db, "db", "", "PostgreSQL connection `URL` (default $DATABASE_URL, else the PG* variables)")
}

// connect opens the database the global flags and environment name.
func (a *app) connect(ctx context.Context) (*pgx.Conn, error) {
	return pg.Connect(ctx, pg.ResolveDSN(a.db, a.getenv))
}
