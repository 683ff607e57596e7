package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

func (a *app) loadCmd() *cobra.Command {
	var opts load.Options
	var in readFlags
	var merge string
	c := &cobra.Command{
		Use:   "load [--type TYPE] SOURCE...",
		Short: "Upsert ndjson resources from files, stdin or http(s) URLs",
		Long: `Load ndjson resources (gzip or plain, detected) from each SOURCE: a file,
- for stdin, or an http(s) URL (pre-signed URLs work as given). Each source
is one transaction: all of it is loaded, or none of it. Resources are
upserted by id without validation, as Aidbox's $load does. Prints the
counts as one line of JSON on stdout.`,
		Example: `  fhirbulk load --type Patient patients.ndjson.gz
  fhirbulk load all-types.ndjson 'https://bucket.example/Observation.ndjson.gz?X-Amz-Signature=...'
  zcat *.ndjson.gz | fhirbulk load -`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("load needs at least one SOURCE (a file, - for stdin, or a URL)")
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Type, "type", "", "every line is a resource of `TYPE` (lines need only an id)")
	f.BoolVar(&opts.FHIR, "fhir", false, "input is in FHIR format: convert it to Aidbox format on the way in")
	f.BoolVar(&opts.History, "history", false, "keep replaced versions in the type's _history table")
	f.BoolVar(&opts.StripNulls, "strip-nulls", false, "drop keys whose value is null, at any depth")
	f.StringVar(&merge, "merge", "", "shallow-merge this JSON `OBJECT` into every resource")
	in.register(c)
	a.dbFlag(c)
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		if opts.Type != "" {
			if err := pg.ValidateType(opts.Type); err != nil {
				return usagef("--type: %v", err)
			}
		}
		if merge != "" {
			m, err := load.ParseMerge(merge)
			if err != nil {
				return usagef("--merge: %v", err)
			}
			opts.Merge = m
		}
		if err := checkStdinOnce(args); err != nil {
			return err
		}
		if err := in.check(); err != nil {
			return err
		}
		opts.MaxLineSize = int(in.maxLine)
		dsn := pg.ResolveDSN(a.db, a.getenv)
		conn, err := pg.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		layout := &pg.Layout{DSN: dsn}
		defer layout.Close()
		l := &load.Loader{Conn: conn, Layout: layout, Opts: opts}
		bar := a.startLoadDisplay()
		l.Progress = bar.progressFunc()
		total, err := l.LoadAll(ctx, args, in.sourceOptions(a))
		bar.stop()
		if err != nil {
			return err
		}
		if opts.Type != "" {
			_, err = fmt.Fprintf(a.stdout, "{\"total\":%d}\n", total.Total())
		} else {
			_, err = fmt.Fprintln(a.stdout, total.JSON())
		}
		return err
	})
	return c
}

// checkStdinOnce refuses "-" given twice among the sources.
func checkStdinOnce(specs []string) error {
	n := 0
	for _, s := range specs {
		if s == "-" {
			n++
		}
	}
	if n > 1 {
		return usagef("stdin (-) can be read only once")
	}
	return nil
}
