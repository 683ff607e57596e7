package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
)

const statusLong = `Without ID: a table of the imports in the state folder (--json: a JSON
array of their states; with none, a line on stderr says so). With ID: that import's status and its inputs'
progress, or its state as JSON (--json); --watch follows it until it ends,
redrawn in place on a terminal, and then shows how it ended. An import
whose process is gone (Ctrl-C, kill -9, a reboot) shows as interrupted:
run the same import again to resume it.

With an ID, the exit status says how the import stands (with --json too,
and with --watch once it ends): 0 finished or still in progress, 1 failed
(some input failed; the others are loaded), 3 interrupted. Ctrl-C stops
--watch (exit 130), not the import: it goes on.`

// statusOptions are status's flags.
type statusOptions struct {
	asJSON, watch, cancel bool
	stateDir              string
}

func (a *app) statusCmd() *cobra.Command {
	var opts statusOptions
	c := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show imports, or one import's progress",
		Long:  statusLong,
		Example: `  fhirbulk status
  fhirbulk status synthea --watch
  fhirbulk status synthea --json | jq .inputs
  fhirbulk status --json | jq -r '.[] | select(.status == "failed") | .id'`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("status takes at most one import ID")
			}
			if len(args) == 1 && bulkimport.CheckID(args[0]) != nil {
				return usagef("ID %q: %v", args[0], bulkimport.ErrBadID)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&opts.asJSON, "json", false, "print the state as JSON (without ID: every import's, as an array)")
	c.Flags().BoolVar(&opts.watch, "watch", false, "follow the import until it ends")
	c.Flags().StringVar(&opts.stateDir, "state-dir", "", "state files' `DIR` (as for import)")
	c.Flags().BoolVar(&opts.cancel, "cancel", false, "cancel the pull from a server ID at the server (DELETE on its status URL), stopping it if it runs")
	c.ValidArgsFunction = a.completeImportIDs(&opts.stateDir)
	mustComplete(c, "state-dir", completeDirs)
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		return a.runStatus(ctx, opts, args)
	})
	return c
}

// runStatus shows the imports, or the one import args name.
func (a *app) runStatus(ctx context.Context, opts statusOptions, args []string) error {
	if opts.cancel {
		if len(args) != 1 || opts.watch || opts.asJSON {
			return usagef("--cancel takes one ID, without --watch or --json")
		}
		return a.runCancel(ctx, opts.stateDir, args[0])
	}
	dir, err := bulkimport.StateDir(opts.stateDir, a.getenv)
	if err != nil {
		return usageError{err}
	}
	store := bulkimport.Store{Dir: dir}
	if len(args) == 0 {
		if opts.watch {
			return usagef("--watch needs an import ID")
		}
		list, err := store.List()
		if err != nil {
			return err
		}
		if opts.asJSON {
			return writeJSON(a.stdout, append([]*bulkimport.State{}, list...))
		}
		if len(list) == 0 {
			fmt.Fprintf(a.stderr, "status: no imports in %s\n", printable(dir))
			return nil
		}
		return writeImportTable(a.stdout, list)
	}
	id := args[0]
	st, err := store.Read(id)
	if err != nil {
		return err
	}
	var stopped error
	if opts.watch {
		if st, stopped = a.watch(ctx, store, id, opts.asJSON); st == nil {
			return stopped
		}
	}
	if opts.asJSON {
		err = writeJSON(a.stdout, st)
	} else {
		_, err = io.WriteString(a.stdout, describe(st))
	}
	switch {
	case err != nil:
		return err
	case stopped != nil:
		if st.Status == bulkimport.StatusInProgress {
			fmt.Fprintf(a.stderr, "stopped watching: import %s goes on%s\n", printable(st.ID), pidNote(st.PID))
		}
		return stopped
	}
	return importStatusError(st)
}

func pidNote(pid int) string {
	if pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}

// importStatusError is what status ID exits with for an import in state
// st: nil when it finished or is still in progress, exit status 1 when it
// failed, 3 when it was interrupted.
func importStatusError(st *bulkimport.State) error {
	switch st.Status {
	case bulkimport.StatusFailed:
		return &exitError{code: exitFailure, err: st.Err()}
	case bulkimport.StatusCancelled:
		return &exitError{code: exitFailure, err: fmt.Errorf("import %s was cancelled at the server", printable(st.ID))}
	case bulkimport.StatusInterrupted:
		return &exitError{code: exitImportInterrupted, err: fmt.Errorf("import %s was interrupted: run it again to resume it (fhirbulk import --resume %s)", printable(st.ID), printable(st.ID))}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

// watch rereads the state until the import is no longer in progress, and
// returns its last state. On a terminal (and without asJSON) it redraws a
// view of it in place, ticking, and clears the view at the end (the caller
// prints the state for good). Ctrl-C stops it: it returns the last state it
// read and an *exitError for exit status 130.
func (a *app) watch(ctx context.Context, store bulkimport.Store, id string, asJSON bool) (*bulkimport.State, error) {
	// The view: on stdout when it is the output (a terminal); with --json,
	// whose JSON is the output, on stderr when that is a terminal other
	// than stdout's, as the progress of the other commands.
	var block *progress.Block
	switch {
	case !asJSON && progress.IsTerminal(a.stdout):
		block = progress.NewBlock(a.stdout)
	case asJSON && a.showProgress(true):
		block = progress.NewBlock(a.stderr)
	}
	if block != nil {
		defer block.Clear() // a display
	}
	view := newImportView()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	var last *bulkimport.State
	for {
		st, err := store.Read(id)
		if err != nil {
			return nil, err
		}
		last = st
		now := time.Now()
		view.observe(st, now)
		if st.Status != bulkimport.StatusInProgress {
			return st, nil
		}
		if block != nil {
			w, n := block.Room()
			block.Draw(view.lines(w, n, now))
		}
		select {
		case <-ctx.Done():
			// The import may have ended meanwhile: say so rather than that
			// it goes on.
			if st, err := store.Read(id); err == nil {
				last = st
			}
			return last, &exitError{code: exitInterrupted}
		case <-tick.C:
		}
	}
}

// watchEvery is how often status --watch rereads the state file (rewritten
// at most once a second) and redraws: the clock moves meanwhile.
const watchEvery = 500 * time.Millisecond

func writeImportTable(w io.Writer, list []*bulkimport.State) error {
	servers := map[string]bool{}
	for _, st := range list {
		if st.Database != nil {
			servers[server(st.Database)] = true
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tSTARTED\tINPUTS\tRESOURCES\tDATABASE")
	for _, st := range list {
		done, n := st.Done()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\n", printable(st.ID), printable(st.Status), st.Time.Start.Local().Format("2006-01-02 15:04:05"), done, len(st.Inputs), n, shortDatabase(st.Database, len(servers) > 1))
	}
	return tw.Flush()
}

// shortDatabase names an import's database in the table of imports: its
// name, and @host:port when the table holds imports into several servers
// ("-" for a state file that records none). Names alone keep the table
// within 80 columns in the usual case, one server.
func shortDatabase(db *pg.Identity, withServer bool) string {
	if db == nil {
		return "-"
	}
	s := db.Database
	if withServer && db.Host != "" {
		s += "@" + server(db)
	}
	return printable(s)
}

func server(db *pg.Identity) string { return net.JoinHostPort(db.Host, strconv.Itoa(db.Port)) }

// describe renders one import for a person.
func describe(st *bulkimport.State) string {
	var b strings.Builder
	done, n := st.Done()
	fmt.Fprintf(&b, "import %s: %s, %d/%d inputs, %d resources", printable(st.ID), printable(st.Status), done, len(st.Inputs), n)
	end := time.Now()
	if st.Time.End != nil {
		end = *st.Time.End
	}
	fmt.Fprintf(&b, " (started %s, %s)\n", st.Time.Start.Local().Format("2006-01-02 15:04:05"), end.Sub(st.Time.Start).Round(time.Second/10))
	if st.Database != nil {
		fmt.Fprintf(&b, "  into %s\n", printable(st.Database.String()))
	}
	if p := st.Pull; p != nil {
		b.WriteString(describePull(p))
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, in := range st.Inputs {
		detail := fmt.Sprintf("%d resources", in.Total)
		switch {
		case in.Status == bulkimport.StatusInProgress && in.Storing:
			detail = fmt.Sprintf("%d resources read, storing", in.Total)
		case in.Status == bulkimport.StatusInProgress && in.BytesTotal > 0:
			detail += fmt.Sprintf(", %s of %s (%d%%)", mb(in.BytesRead), mb(in.BytesTotal), in.BytesRead*100/in.BytesTotal)
		case in.Status == bulkimport.StatusInProgress:
			detail += ", " + mb(in.BytesRead)
		case in.Status == bulkimport.StatusFinished && in.Kind == bulkimport.KindDeleted:
			detail = fmt.Sprintf("%d deleted, %d not there, in %s", in.Deleted, in.Absent, (time.Duration(in.Duration) * time.Millisecond).Round(time.Millisecond))
			if in.Skipped > 0 {
				detail += fmt.Sprintf(", %d bad lines skipped", in.Skipped)
			}
		case in.Status == bulkimport.StatusFinished:
			detail += fmt.Sprintf(" in %s", (time.Duration(in.Duration) * time.Millisecond).Round(time.Millisecond))
			if in.Skipped > 0 {
				detail += fmt.Sprintf(", %d bad lines skipped", in.Skipped)
			}
		case in.Status == bulkimport.StatusFailed:
			detail = printable(in.Error)
		case in.Status == bulkimport.StatusPending:
			detail = ""
		}
		what := in.ResourceType
		if in.Kind == bulkimport.KindDeleted {
			what = "deletions"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", printable(in.Status), printable(what), printable(in.URL), detail)
	}
	tw.Flush() // a strings.Builder
	for _, e := range st.Error {
		fmt.Fprintf(&b, "  skipped lines: %s (%d)\n", printable(e.URL), *e.Count)
	}
	for _, e := range st.ServerErrors {
		fmt.Fprintf(&b, "  the exporting server's errors, not loaded: %s\n", printable(e))
	}
	return b.String()
}

// describePull says where a pull from a server stands.
func describePull(p *bulkimport.PullState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  from %s (%s)", printable(p.KickOff), printable(p.Method))
	if len(p.Params) > 0 {
		fmt.Fprintf(&b, " %s", printable(strings.Join(p.Params, " ")))
	}
	b.WriteString("\n")
	switch p.Phase {
	case bulkimport.PhaseKickOff:
		b.WriteString("  kicking off the export\n")
	case bulkimport.PhaseExport:
		fmt.Fprintf(&b, "  the server exports: %s\n", pullProgress(p))
	case bulkimport.PhaseExpired, bulkimport.PhaseFailed:
		fmt.Fprintf(&b, "  %s: %s\n", p.Phase, printable(p.Error))
	case bulkimport.PhaseCancelled:
		b.WriteString("  cancelled at the server\n")
	}
	if p.TransactionTime != "" {
		fmt.Fprintf(&b, "  transactionTime %s", printable(p.TransactionTime))
		if p.Expires != nil {
			fmt.Fprintf(&b, ", files kept by the server until %s", p.Expires.Local().Format("2006-01-02 15:04:05"))
		}
		if p.Released {
			b.WriteString(", released (DELETE sent)")
		}
		b.WriteString("\n")
	}
	for _, e := range p.ServerErrors {
		n := int64(0)
		if e.Count != nil {
			n = *e.Count
		}
		fmt.Fprintf(&b, "  the server's errors: %s (%d)\n", printable(e.URL), n)
	}
	return b.String()
}

// pullProgress is the server's progress of an export: its X-Progress, and
// how often it was asked.
func pullProgress(p *bulkimport.PullState) string {
	s := "no progress said"
	if p.Progress != "" {
		s = printable(p.Progress)
	}
	return s + " (" + progress.Plural(int64(p.Polls), "polls") + ")"
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
