package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
)

func (a *app) statusCmd() *cobra.Command {
	var asJSON, watch bool
	var stateDir string
	c := &cobra.Command{
		Use:   "status [ID]",
		Short: "Show imports, or one import's progress",
		Long: `Without ID: a table of the imports in the state folder. With ID: that
import's status and its inputs' progress, or its state as JSON (--json).
An import whose process is gone (Ctrl-C, kill -9, a reboot) shows as
interrupted: run the same import again to resume it.`,
		Example: `  fhirbulk status
  fhirbulk status synthea --watch
  fhirbulk status synthea --json | jq .inputs`,
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
	c.Flags().BoolVar(&asJSON, "json", false, "print the state as JSON")
	c.Flags().BoolVar(&watch, "watch", false, "redraw until the import ends")
	c.Flags().StringVar(&stateDir, "state-dir", "", "state files' `DIR` (as for import)")
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		dir, err := bulkimport.StateDir(stateDir, a.getenv)
		if err != nil {
			return usageError{err}
		}
		store := bulkimport.Store{Dir: dir}
		if len(args) == 0 {
			if watch || asJSON {
				return usagef("--watch and --json need an import ID")
			}
			list, err := store.List()
			if err != nil {
				return err
			}
			return writeImportTable(a.stdout, list)
		}
		id := args[0]
		st, err := store.Read(id)
		if err != nil {
			return err
		}
		if watch {
			if st, err = a.watch(ctx, store, id, asJSON); err != nil {
				return err
			}
		}
		if asJSON {
			out, _ := json.MarshalIndent(st, "", "  ")
			_, err = fmt.Fprintln(a.stdout, string(out))
			return err
		}
		if !watch || !progress.Enabled(a.stdout, false) {
			_, err = io.WriteString(a.stdout, describe(st))
		}
		return err
	})
	return c
}

// watch rereads the state until the import is no longer in progress; on a
// terminal it redraws the description in place.
func (a *app) watch(ctx context.Context, store bulkimport.Store, id string, quietly bool) (*bulkimport.State, error) {
	live := !quietly && progress.Enabled(a.stdout, false)
	drawn := 0
	for {
		st, err := store.Read(id)
		if err != nil {
			return nil, err
		}
		if live {
			text := describe(st)
			if drawn > 0 {
				fmt.Fprintf(a.stdout, "\x1b[%dA\x1b[J", drawn) // up, and clear what was drawn
			}
			io.WriteString(a.stdout, text) //nolint:errcheck
			drawn = strings.Count(text, "\n")
		}
		if st.Status != bulkimport.StatusInProgress {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func writeImportTable(w io.Writer, list []*bulkimport.State) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tSTARTED\tINPUTS\tRESOURCES")
	for _, st := range list {
		done, n := st.Done()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\n", printable(st.ID), printable(st.Status), st.Time.Start.Local().Format("2006-01-02 15:04:05"), done, len(st.Inputs), n)
	}
	return tw.Flush()
}

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
		case in.Status == bulkimport.StatusFinished:
			detail += fmt.Sprintf(" in %s", (time.Duration(in.Duration) * time.Millisecond).Round(time.Millisecond))
		case in.Status == bulkimport.StatusFailed:
			detail = printable(in.Error)
		case in.Status == bulkimport.StatusPending:
			detail = ""
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", printable(in.Status), printable(in.ResourceType), printable(in.URL), detail)
	}
	tw.Flush() //nolint:errcheck // a strings.Builder
	return b.String()
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
