package cmd

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/dump"
	"github.com/fhirbulk/fhirbulk/pkg/export"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// outputFlags are the flags of every command that writes an export.
type outputFlags struct {
	path   string
	gzip   bool
	force  bool
	upload uploadFlags
}

func (o *outputFlags) register(c *cobra.Command) {
	c.Flags().StringVarP(&o.path, "output", "o", "", "write to `PATH` or s3://, gs://, azblob://BUCKET/KEY (made atomically: complete or absent; .gz implies --gzip)")
	c.Flags().BoolVar(&o.gzip, "gzip", false, "gzip the output")
	c.Flags().BoolVar(&o.force, "force", false, "replace an existing --output file (a regular file only) or object")
	o.upload.register(c)
}

// open opens the output; ctx's end aborts an upload to a bucket.
func (o *outputFlags) open(ctx context.Context, a *app) (sink.Destination, error) {
	if err := refuseCompressedTerminal(o, a.stdout, progress.IsTerminal); err != nil {
		return nil, err
	}
	up, err := o.upload.upload()
	if err != nil {
		return nil, err
	}
	return sink.Open(sink.Options{Path: o.path, Gzip: o.gzip, Force: o.force, Stdout: a.stdout, Context: ctx, Upload: up})
}

// export opens the output (first: a taken -o path fails before any query)
// and a connection, runs write, and publishes the output only if write
// succeeded; then says what it wrote (what, and the rows write returns) in
// a summary line when it wrote a file.
func (a *app) export(ctx context.Context, out *outputFlags, what string, write func(conn *pgx.Conn, w *countingWriter) (int64, error)) error {
	start := time.Now()
	s, err := out.open(ctx, a)
	if err != nil {
		return err
	}
	defer s.Abort()
	conn, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	w := &countingWriter{w: s}
	rows, err := write(conn, w)
	if err != nil {
		return err
	}
	if err := s.Commit(); err != nil {
		return err
	}
	a.summarize(out, what, rows, "rows", w.n.Load(), time.Since(start))
	return nil
}

// dumpOptions are dump's flags.
type dumpOptions struct {
	out      outputFlags
	since    string
	fhir     bool
	parallel int
	order    string
}

func (a *app) dumpCmd() *cobra.Command {
	var opts dumpOptions
	c := &cobra.Command{
		Use:   "dump TYPE",
		Short: "Write every resource of a type as ndjson",
		Long: `Write every resource of TYPE as ndjson (one JSON object per line) in Aidbox
format (or FHIR format with --fhir), with resourceType, id and meta
(versionId, lastUpdated, createdAt) put back, to stdout or to --output.`,
		Example: `  fhirbulk dump Patient > patients.ndjson
  fhirbulk dump Observation --since 2024-01-01 -o obs.ndjson.gz
  diff <(fhirbulk --db "$A" dump --order id Patient) <(fhirbulk --db "$B" dump --order id Patient)`,
		Args: exactArgs(1, "one resource TYPE"),
	}
	opts.out.register(c)
	c.Flags().StringVar(&opts.since, "since", "", "only resources created after `TIME` (RFC 3339 or YYYY-MM-DD, UTC)")
	c.Flags().BoolVar(&opts.fhir, "fhir", false, "write FHIR format (createdAt as the meta extension ex:createdAt)")
	c.Flags().IntVar(&opts.parallel, "parallel", 1, "read with `N` connections at one snapshot (lines then come in no particular order)")
	c.Flags().StringVar(&opts.order, "order", "", "`id`: lines sorted by id in byte order, as LC_ALL=C sort (for diffing two dumps; the server sorts the table)")
	a.dbFlag(c)
	c.ValidArgsFunction = a.completeTypeArg
	mustComplete(c, "order", completeValues("id"))
	mustComplete(c, "output", completeFiles("ndjson", "gz"))
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		return a.runDump(ctx, opts, args[0])
	})
	return c
}

// runDump writes every resource of type typ.
func (a *app) runDump(ctx context.Context, opts dumpOptions, typ string) error {
	do := dump.Options{Type: typ, FHIR: opts.fhir}
	if err := store.ValidateType(do.Type); err != nil {
		return usageError{err}
	}
	if opts.since != "" {
		t, err := dump.ParseSince(opts.since)
		if err != nil {
			return usagef("--since: %v", err)
		}
		do.Since = t
	}
	if opts.parallel < 1 {
		return usagef("--parallel: must be at least 1")
	}
	switch opts.order {
	case "":
	case "id":
		if opts.parallel > 1 {
			return usagef("--order id reads with one connection: drop --parallel")
		}
		do.ByID = true
	default:
		return usagef("--order: %q is not id (the one order there is)", opts.order)
	}
	out := &opts.out
	return a.export(ctx, out, "dump "+do.Type, func(conn *pgx.Conn, w *countingWriter) (int64, error) {
		var total int64 = -1
		if a.showProgress(out.path == "" || out.path == "-") {
			total = store.EstimateRows(ctx, conn, do.Type)
		}
		bar := a.startRowsDisplay("dump ", do.Type, total, out, w)
		defer bar.stop()
		do.Progress = bar.progressFunc()
		if opts.parallel > 1 {
			return export.Dump(ctx, conn, pg.ResolveDSN(a.db, a.getenv), opts.parallel, do, w)
		}
		tx, err := pg.BeginReadOnly(ctx, conn)
		if err != nil {
			return 0, err
		}
		defer tx.Rollback(context.Background()) // read only: nothing to keep
		return dump.Dump(ctx, tx, do, w)
	})
}
