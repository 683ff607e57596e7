package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// loadOptions are load's flags.
type loadOptions struct {
	load       load.Options // the flags that are load's options as they are
	in         readFlags
	merge      string
	errorsPath string
	check      bool
	newType    bool
	noFmtCheck bool
}

func (a *app) loadCmd() *cobra.Command {
	var lo loadOptions
	opts, in := &lo.load, &lo.in
	c := &cobra.Command{
		Use:   "load [--type TYPE] SOURCE...",
		Short: "Upsert ndjson resources from files, stdin or http(s) URLs",
		Long: `Load ndjson resources (gzip or plain, detected) from each SOURCE: a file,
- for stdin, or an http(s) URL (pre-signed URLs work as given). Each source
is one transaction: all of it is loaded, or none of it; every SOURCE is
checked (a file exists and opens, a URL parses) before the first is
loaded. A type that is neither an R4 type nor has a table is refused as a
likely typo unless --new-type is given. Resources are
upserted by id without validation, as Aidbox's $load does, but a source
whose first lines are in the other format (FHIR lines without --fhir, or
Aidbox lines with it) is refused. Prints the counts as one line of JSON on
stdout. With --check, nothing is stored and no database is needed: the
sources are read and checked as a load would, and the counts are those it
would load.`,
		Example: `  fhirbulk load --type Patient patients.ndjson.gz
  fhirbulk load all-types.ndjson 'https://bucket.example/Observation.ndjson.gz?X-Amz-Signature=...'
  zcat *.ndjson.gz | fhirbulk load -
  fhirbulk load --check --fhir export/*.ndjson.gz`,
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
	f.StringVar(&lo.merge, "merge", "", "shallow-merge this JSON `OBJECT` into every resource")
	f.IntVar(&opts.MaxErrors, "max-errors", 0, "skip up to `N` bad lines per source (the source commits the rest)")
	f.StringVar(&lo.errorsPath, "errors", "", "write the skipped lines to `FILE` as OperationOutcome ndjson (else: on stderr)")
	f.BoolVar(&opts.PreserveMeta, "preserve-meta", false, "meta.versionId and meta.lastUpdated set txid and ts (an exact restore)")
	f.BoolVar(&lo.check, "check", false, "store nothing: read and check the sources as a load would, without a database, and print the counts it would load")
	f.BoolVar(&lo.newType, "new-type", false, "allow a type that is neither an R4 type nor has a table yet: its tables are made (else such a type is refused, as a likely typo)")
	f.BoolVar(&lo.noFmtCheck, "no-format-check", false, "do not check the first lines of each source for the other format (FHIR or Aidbox)")
	in.register(c)
	a.dbFlag(c)
	mustComplete(c, "type", a.completeTypeArg)
	mustComplete(c, "errors", completeFiles("ndjson"))
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		return a.runLoad(ctx, lo, args)
	})
	return c
}

// runLoad loads the SOURCEs of args.
func (a *app) runLoad(ctx context.Context, lo loadOptions, args []string) error {
	opts, in := lo.load, &lo.in
	if opts.Type != "" {
		if err := store.ValidateType(opts.Type); err != nil {
			return usagef("--type: %v", err)
		}
	}
	if lo.merge != "" {
		m, err := load.ParseMerge(lo.merge)
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
	if opts.MaxErrors < 0 {
		return usagef("--max-errors: must not be negative")
	}
	if lo.errorsPath != "" && opts.MaxErrors == 0 {
		return usagef("--errors needs --max-errors N: without it the first bad line stops the load")
	}
	if !lo.noFmtCheck {
		opts.FormatCheck = fhirformat.CheckLines
	}
	opts.FormatHint, opts.Words = loadFormatHint, lineWords
	var errs sink.Destination
	if lo.errorsPath != "" {
		var err error
		if errs, err = sink.Open(sink.Options{Path: lo.errorsPath, Context: ctx}); err != nil {
			return fmt.Errorf("--errors: %w", err)
		}
		defer errs.Abort()
	}
	opts.OnlyKnownTypes = !lo.newType
	l := &load.Loader{Opts: opts, DryRun: lo.check}
	if !lo.check {
		dsn := pg.ResolveDSN(a.db, a.getenv)
		conn, err := pg.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		l.Layout = &store.Layout{DSN: dsn}
		defer l.Layout.Close()
		l.Conn = conn
		if err := checkNewType(ctx, l.Layout, opts.Type, lo.newType); err != nil {
			return err
		}
	}
	bar := a.startLoadDisplay()
	l.Progress = bar.progressFunc()
	res, err := l.LoadAll(ctx, args, in.sourceOptions(a))
	bar.stop()
	// The errors file is written when the load succeeded, or when the
	// sources committed before the failed one skipped lines.
	if err == nil || len(res.Skipped) > 0 {
		if werr := a.reportSkipped(res.Skipped, errs); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, res.Summary(opts.Type != "", opts.MaxErrors > 0))
	return err
}

// checkNewType refuses --type t when it is neither an R4 type nor has a
// table, unless --new-type says it is meant.
func checkNewType(ctx context.Context, layout *store.Layout, t string, newType bool) error {
	if t == "" || newType {
		return nil
	}
	if _, ok := r4types.Spelling(t); ok {
		return nil
	}
	ok, err := layout.HasTable(ctx, t)
	if err != nil || ok {
		return err
	}
	return usagef("--type %s: not an R4 resource type, and there is no table %s%s; give --new-type to create it", t, store.Table(t), store.DidYouMean(t))
}

// maxSkippedShown is how many skipped lines are told on stderr, one line
// each, when there is no --errors file.
const maxSkippedShown = 20

// reportSkipped writes the skipped lines to the errors file (then commits
// it), or tells them on stderr.
func (a *app) reportSkipped(bad []load.BadLine, errs sink.Destination) error {
	if errs != nil {
		w := bulkdata.NewErrorsWriter(errs)
		for _, l := range bad {
			if err := w.BadLine(l.Source, l.Line, l.ID, l.Reason); err != nil {
				return err
			}
		}
		return errs.Commit()
	}
	for i, l := range bad {
		if i == maxSkippedShown {
			fmt.Fprintf(a.stderr, "fhirbulk: … and %d more bad lines skipped (use --errors FILE to keep them all)\n", len(bad)-i)
			break
		}
		fmt.Fprintf(a.stderr, "fhirbulk: skipped %s line %d: %s\n", printable(l.Source), l.Line, printable(l.Reason))
	}
	return nil
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
