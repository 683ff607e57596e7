package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/compartment"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// typesOptions are types' flags.
type typesOptions struct {
	json     bool // one JSON array instead of the table
	estimate bool // the planner's counts instead of counting
	indexes  bool // the compartment's index statements instead
}

func (a *app) typesCmd() *cobra.Command {
	var opts typesOptions
	c := &cobra.Command{
		Use:   "types",
		Short: "List the resource types in the database, with their counts and sizes",
		Long: `List every resource type: every table in the Aidbox layout, empty ones
included, with its number of resources (counted, in one snapshot; with
--estimate the planner's guess, which costs nothing on a huge database)
and its size on disk (indexes and TOAST included).`,
		Example: `  fhirbulk types
  fhirbulk types --json | jq -r '.[] | select(.count > 0) | .type'
  fhirbulk types --compartment-indexes | psql "$DATABASE_URL"`,
		Args: exactArgs(0, "no arguments"),
	}
	c.Flags().BoolVar(&opts.json, "json", false, `print one JSON array of {"type", "count", "bytes"}`)
	c.Flags().BoolVar(&opts.estimate, "estimate", false, "the planner's row counts instead of counting (-1: never analyzed)")
	c.Flags().BoolVar(&opts.indexes, "compartment-indexes", false, "print the CREATE INDEX statements that serve Patient- and Group-level exports of these types (export --patient, --group, serve's $export)")
	a.dbFlag(c)
	c.ValidArgsFunction = cobra.NoFileCompletions
	c.RunE = a.run(func(ctx context.Context, _ []string) error { return a.runTypes(ctx, opts) })
	return c
}

// runTypes lists the database's resource types.
func (a *app) runTypes(ctx context.Context, opts typesOptions) error {
	conn, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tx, err := pg.BeginReadOnly(ctx, conn)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) // read only
	if opts.indexes {
		types, err := store.ListTypes(ctx, tx)
		if err != nil {
			return err
		}
		for _, t := range types {
			for _, p := range compartment.Paths(t.Type) {
				name := pgx.Identifier{store.TableName(t.Type) + "_patient_" + strings.ReplaceAll(p.String(), ".", "_")}.Sanitize()
				if _, err := fmt.Fprintln(a.stdout, compartment.IndexSQL(store.Table(t.Type), name, p)+";"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	types, err := store.Inventory(ctx, tx, !opts.estimate)
	if err != nil {
		return err
	}
	type entry struct {
		Type  string `json:"type"`
		Count int64  `json:"count"`
		Bytes int64  `json:"bytes"`
	}
	list := make([]entry, 0, len(types))
	for _, t := range types {
		list = append(list, entry{Type: t.Type, Count: t.Count, Bytes: t.Bytes})
	}
	if len(list) == 0 && !opts.json {
		fmt.Fprintf(a.stderr, "types: no resource types (no table in the Aidbox layout) in %s\n", pg.Where(&conn.Config().Config))
		return nil
	}
	if opts.json {
		out, _ := json.Marshal(list) // plain values
		_, err := fmt.Fprintln(a.stdout, string(out))
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tRESOURCES\tSIZE")
	for _, e := range list {
		count := progress.Count(e.Count)
		if e.Count < 0 {
			count = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(e.Type), count, progress.Bytes(e.Bytes))
	}
	return tw.Flush()
}
