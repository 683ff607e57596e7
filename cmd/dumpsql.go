package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/dumpsql"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// dumpSQLOptions are dump-sql's flags.
type dumpSQLOptions struct {
	out  outputFlags
	file string
	sql  dumpsql.Options // all but Query
}

func (a *app) dumpSQLCmd() *cobra.Command {
	var opts dumpSQLOptions
	c := &cobra.Command{
		Use:   "dump-sql [QUERY] [-f FILE] [--format csv|tsv|ndjson|sql|elastic-bulk]",
		Short: "Stream any SQL query's result as csv, tsv, ndjson, sql or elastic-bulk",
		Long: `Run one query (SELECT, WITH, VALUES or TABLE) in a READ ONLY transaction (a
query that writes fails with PostgreSQL's own message) and stream its rows
to stdout or --output:

  csv           RFC 4180, a header row, NULL as an empty field, booleans true/false
  tsv           PostgreSQL's COPY text format (\N for NULL, backslash escapes)
  ndjson        one JSON object per row; numbers, json/jsonb and booleans typed
  sql           a psql script: CREATE TABLE with the result's types, then a COPY block
  elastic-bulk  an Elasticsearch/OpenSearch _bulk body (_id from a column named id)

Timestamps are printed in UTC (the session runs with TimeZone=UTC, DateStyle=ISO).`,
		Example: `  fhirbulk dump-sql 'select id, resource from patient' -o patients.csv
  fhirbulk dump-sql -f report.sql --format ndjson | jq .
  fhirbulk dump-sql 'select id, resource from observation' --format elastic-bulk --index obs`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("dump-sql takes one QUERY (got %d arguments; quote the query)", len(args))
			}
			return nil
		},
	}
	opts.out.register(c)
	f := c.Flags()
	f.StringVarP(&opts.file, "file", "f", "", "read the query from `FILE` (- for stdin; or a URL: file://, http(s)://, s3://, gs://, azblob://)")
	f.StringVar(&opts.sql.Format, "format", "csv", "output `FORMAT`: "+strings.Join(dumpsql.Formats, ", "))
	f.BoolVar(&opts.sql.NoHeader, "no-header", false, "csv: leave out the header row")
	f.DurationVar(&opts.sql.Timeout, "timeout", 0, "cancel the query after `DURATION` (statement_timeout), e.g. 30s, 5m")
	f.StringVar(&opts.sql.Table, "table", "dump", "sql: the `NAME` of the table to create")
	f.StringVar(&opts.sql.Index, "index", "fhir", "elastic-bulk: the index `NAME`")
	a.dbFlag(c)
	c.ValidArgsFunction = cobra.NoFileCompletions
	mustComplete(c, "format", completeValues(dumpsql.Formats...))
	mustComplete(c, "file", completeFiles("sql"))
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		return a.runDumpSQL(ctx, opts, args)
	})
	return c
}

// maxQueryFile bounds what -f reads: a query, not a data file by mistake.
const maxQueryFile = 16 << 20

// readQuery reads -f FILE: a file, - for stdin, file:///PATH, an http(s)
// URL or a bucket's object, as load reads a source (gzip too). A refused
// URL or a file that is not there is a usage error; a store or server
// that fails, exit 1.
func (a *app) readQuery(ctx context.Context, file string) (string, error) {
	opts := source.Options{Stdin: a.stdin}
	if err := source.Check(file, opts); err != nil {
		return "", usagef("-f %v", err)
	}
	b, err := source.ReadAll(ctx, file, opts, maxQueryFile)
	var tl *source.TooLargeError
	switch {
	case err == nil:
		return string(b), nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case errors.As(err, &tl):
		return "", usagef("-f %v: not a query", err)
	case source.IsURL(file):
		return "", fmt.Errorf("-f %w", err)
	}
	return "", usagef("-f %v", err)
}

// runDumpSQL runs the query of args or --file.
func (a *app) runDumpSQL(ctx context.Context, opts dumpSQLOptions, args []string) error {
	o, file := opts.sql, opts.file
	switch {
	case len(args) == 1 && file != "":
		return usagef("give the query as an argument or with -f, not both")
	case len(args) == 1:
		o.Query = args[0]
	case file != "":
		q, err := a.readQuery(ctx, file)
		if err != nil {
			return err
		}
		o.Query = q
	default:
		return usagef("dump-sql needs a QUERY (an argument, or -f FILE)")
	}
	if o.Table == "" || o.Index == "" {
		return usagef("--table and --index must not be empty")
	}
	var oe *dumpsql.OptionError
	if err := o.Check(); errors.As(err, &oe) && oe.Field == "query" {
		return usagef("%s", oe.Reason)
	} else if errors.As(err, &oe) {
		return usagef("--%s: %s", strings.TrimSuffix(oe.Field+" "+oe.Value, " "), oe.Reason)
	} else if err != nil {
		return usageError{err}
	}
	return a.export(ctx, &opts.out, "dump-sql", func(conn *pgx.Conn, w *countingWriter) (int64, error) {
		bar := a.startRowsDisplay("dump-sql", "", -1, &opts.out, w)
		defer bar.stop()
		o.Progress = bar.progressFunc()
		return dumpsql.Run(ctx, conn, o, w)
	})
}
