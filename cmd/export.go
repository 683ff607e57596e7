package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/compartment"
	"github.com/fhirbulk/fhirbulk/pkg/dump"
	"github.com/fhirbulk/fhirbulk/pkg/export"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// exportOptions are export's flags.
type exportOptions struct {
	export                      export.Options // the flags that are export's options as they are
	types                       []string
	patients                    []string
	since, until, sinceManifest string
	split                       sizeValue
	force                       bool
	upload                      uploadFlags
}

func (a *app) exportCmd() *cobra.Command {
	var opts exportOptions
	o := &opts.export
	c := &cobra.Command{
		Use:   "export DIR",
		Short: "Write every type (or some) in one consistent snapshot as an HL7 Bulk Data folder",
		Long: `Write every resource type that has resources (or those of --type) into the new
folder DIR, read as of one instant over --parallel connections: one ndjson
file per type (Patient.ndjson, or numbered files with --split-size), and
DIR/manifest.json, an HL7 Bulk Data manifest. DIR appears only when the
export is complete. The manifest is also printed on stdout as one line.

With --since or --since-manifest the export is incremental: the resources
changed since then, and deleted.TYPE.ndjson files listing those deleted
(HL7 transaction Bundles of DELETE entries). --since-manifest goes on from
an earlier export's watermark and misses no change, even one whose
transaction began before that export and committed after it.

With --patient or --group the export keeps the Patient compartments of
those patients (FHIR R4's CompartmentDefinition: each resource that
refers to one of them by the elements R4 names, as Observation.subject or
.performer, in Aidbox's {resourceType, id} or FHIR's "Patient/ID" form),
and their Patient resources; types outside the compartment (Organization,
Practitioner, Medication, ...) are not exported. A Group's members are
read at the export's snapshot.

The tables read are locked IN ACCESS SHARE MODE until the export ends, as
pg_dump locks them: a TRUNCATE or a table rewrite waits for it. A role
without pg_read_all_stats cannot see when other roles' transactions began:
the export then waits (--wait) for those open at its start to end, or
refuses; grant it pg_read_all_stats to spare the wait.`,
		Example: `  fhirbulk export /exports/full
  fhirbulk export --type Patient,Observation --gzip --split-size 1GiB /exports/clinical
  fhirbulk export --since-manifest /exports/last/manifest.json /exports/$(date +%F)
  fhirbulk export --group diabetes-cohort --fhir /exports/cohort`,
		Args: exactArgs(1, "the export folder DIR"),
	}
	f := c.Flags()
	f.StringSliceVar(&opts.types, "type", nil, "export only `TYPE`s (comma-separated or repeated)")
	f.StringArrayVar(&opts.patients, "patient", nil, "export only the Patient compartment of patient `ID` (repeatable; HL7's Patient-level export)")
	f.StringVar(&o.Group, "group", "", "export only the Patient compartments of the patients that are members of Group `ID` (HL7's Group-level export)")
	f.BoolVar(&o.FHIR, "fhir", false, "write FHIR format (as dump --fhir)")
	f.BoolVar(&o.Gzip, "gzip", false, "gzip every file (.ndjson.gz)")
	f.Var(&opts.split, "split-size", "cut each type into numbered files of about `SIZE` of ndjson (e.g. 500MB, 1GiB)")
	f.IntVar(&o.Parallel, "parallel", 2, "read with `N` connections")
	f.StringVar(&opts.since, "since", "", "only resources changed after `TIME` (RFC 3339 or YYYY-MM-DD), and deletions")
	f.StringVar(&opts.until, "until", "", "only resources changed up to `TIME`")
	f.StringVar(&opts.sinceManifest, "since-manifest", "", "go on from the export whose manifest is `FILE` (its watermark)")
	f.BoolVar(&opts.force, "force", false, "replace an existing DIR that holds an earlier export, once the new one is complete")
	f.BoolVar(&o.ForceSince, "force-since", false, "go on from --since-manifest even if made on another database, of other types, or its watermark is in the future")
	f.DurationVar(&o.SignURLs, "sign-urls", 0, "in an export to a bucket, make the manifest's urls pre-signed https URLs valid for `DURATION` (e.g. 24h), for another server's $import")
	opts.upload.register(c)
	f.DurationVar(&o.Wait, "wait", time.Minute, "wait up to `DURATION` for a table another session locked, and (a role without pg_read_all_stats) for other roles' open transactions")
	a.dbFlag(c)
	c.ValidArgsFunction = completeDirs
	mustComplete(c, "type", a.completeTypeList)
	mustComplete(c, "since-manifest", completeFiles("json"))
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		if c.Flags().Changed("type") && len(opts.types) == 0 {
			return usagef("--type: no type given (leave --type out for every type)")
		}
		return a.runExport(ctx, opts, args[0], exportRequest(c, args))
	})
	return c
}

// runExport exports into the new folder dir; request is the command as the
// manifest records it.
func (a *app) runExport(ctx context.Context, opts exportOptions, dir, request string) error {
	o := opts.export
	for _, t := range opts.types {
		if err := store.ValidateType(t); err != nil {
			return usagef("--type: %v", err)
		}
	}
	o.Types = opts.types
	if len(opts.patients) > 0 && o.Group != "" {
		return usagef("give --patient or --group, not both")
	}
	for _, id := range opts.patients {
		if !compartment.ID.MatchString(id) {
			return usagef("--patient %q: not a FHIR id (letters, digits, - and ., at most 64)", printable(id))
		}
	}
	if o.Group != "" && !compartment.ID.MatchString(o.Group) {
		return usagef("--group %q: not a FHIR id (letters, digits, - and ., at most 64)", printable(o.Group))
	}
	if len(opts.patients) > 0 {
		o.Patients = &compartment.Selection{IDs: opts.patients}
	}
	if o.Patients != nil || o.Group != "" {
		for _, t := range o.Types {
			if !compartment.In(t) {
				return usagef("--type %s: not in the Patient compartment (--patient, --group export none of it)", t)
			}
		}
	}
	if o.Parallel < 1 {
		return usagef("--parallel: must be at least 1")
	}
	if opts.split > 0 && opts.split < minSplitSize {
		return usagef("--split-size: %s is less than %s, the least (a size takes a unit: 500MB, 1GiB)", opts.split.String(), ndjson.FormatSize(minSplitSize))
	}
	var err error
	o.SplitSize = int64(opts.split)
	if o.Upload, err = opts.upload.upload(); err != nil {
		return err
	}
	switch {
	case o.SignURLs < 0:
		return usagef("--sign-urls: must not be negative")
	case o.SignURLs > 0 && !bucket.Is(dir):
		return usagef("--sign-urls: %s is not in a bucket (s3://, gs://, azblob://): only objects in a bucket get signed URLs", dir)
	case o.SignURLs > 7*24*time.Hour:
		return usagef("--sign-urls: %s is more than 7 days, the longest an S3 signature lasts", o.SignURLs)
	}
	if opts.since != "" && opts.sinceManifest != "" {
		return usagef("give --since or --since-manifest, not both")
	}
	if opts.since != "" {
		t, err := dump.ParseSince(opts.since)
		if err != nil {
			return usagef("--since: %v", err)
		}
		o.Since = export.After(t)
	}
	if opts.until != "" {
		if o.Until, err = dump.ParseSince(opts.until); err != nil {
			return usagef("--until: %v", err)
		}
	}
	if opts.sinceManifest != "" {
		var from bulkdata.Ext
		if o.Since, from, err = bulkdata.ReadChain(ctx, opts.sinceManifest); err != nil {
			return fsutil.FileError("--since-manifest", source.Redact(opts.sinceManifest), err)
		}
		o.From = &from
		o.FromPath = bulkdata.RealPath(opts.sinceManifest)
	} else if o.ForceSince {
		return usagef("--force-since goes with --since-manifest")
	}
	o.DSN = pg.ResolveDSN(a.db, a.getenv)
	o.Request = request
	o.Version = version()
	start := time.Now()
	// The live line shows from the start (its clock runs while the
	// export waits for locks or a watermark), and ends before anything
	// else is printed: a message goes above it, the summary after it.
	var live *progress.Live
	say := func(format string, args ...any) {
		if live != nil {
			live.Println(fmt.Sprintf(format, args...))
			return
		}
		fmt.Fprintf(a.stderr, format, args...)
	}
	if a.showProgress(false) {
		meter := progress.NewMeter("export ", "rows")
		meter.Begin(dir, -1, 0)
		var once sync.Once
		live = progress.StartLine(a.stderr, meter.Line)
		defer live.Stop()
		o.Progress = func(p export.Progress) {
			once.Do(func() { meter.Begin(dir, p.Estimate, 0) })
			meter.Update(p.Rows, p.Bytes)
		}
	}
	if o.Wait < 0 {
		return usagef("--wait: must not be negative")
	}
	o.Capped = func(asked, used, free int) {
		say("export: --parallel %d capped at %d: the server has %s free besides this one, and the export leaves a quarter of them (at least one) to others\n",
			asked, used, progress.Plural(int64(free), "connection slots"))
	}
	o.Waiting = func(n int) {
		if !a.quiet {
			say("export: waiting up to %s (--wait) for %s of other roles to end: this role cannot read when they began (pg_read_all_stats)\n",
				o.Wait, progress.Plural(int64(n), "transactions"))
		}
	}
	m, err := export.Export(ctx, dir, opts.force, o)
	live.Stop()
	var hidden *pg.HiddenTransactionsError
	var locked *export.LockError
	var chain *export.ChainError
	switch {
	case errors.As(err, &chain) && (chain.Kind == "types" || chain.Kind == "compartment"):
		return usagef("--since-manifest %s: %v (--force-since to go on anyway)", printable(source.Redact(opts.sinceManifest)), err)
	case errors.As(err, &chain):
		return fmt.Errorf("--since-manifest %s: %w (--force-since to go on anyway)", printable(source.Redact(opts.sinceManifest)), err)
	case errors.As(err, &hidden):
		return fmt.Errorf("export: %w: no sound watermark; grant pg_read_all_stats to %q (GRANT pg_read_all_stats TO %s), or run it again when they have ended",
			err, hidden.Role, pgx.Identifier{hidden.Role}.Sanitize())
	case errors.As(err, &locked):
		return fmt.Errorf("export: %w (--wait)", err)
	case err != nil:
		return err
	}
	if n := errorCount(m); n > 0 {
		fmt.Fprintf(a.stderr, "export: %s could not be exported (not a JSON object, or no id): listed in %s\n",
			progress.Plural(n, "resources"), printable(filepath.Join(dir, m.Error[0].URL)))
	}
	if !a.quiet {
		var rows int64
		for _, f := range m.Output {
			rows += *f.Count
		}
		fmt.Fprintf(a.stderr, "export: %s in %s, %s deleted, to %s in %s\n",
			progress.Plural(rows, "resources"), progress.Plural(int64(len(m.Output)), "files"), progress.Plural(deletedCount(m), "resources"), printable(dir), progress.Took(time.Since(start)))
	}
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, string(line))
	return err
}

// minSplitSize is the least --split-size: "--split-size 10" (bytes, meant
// as 10 GB?) once made a file of every line, 43,350 of them. Smaller
// pieces than this are a mistake, not a choice.
const minSplitSize = 16 << 10

// exportRequest is the command as the manifest records it, as it can be
// run again (shell-quoted where needed): the flags given (never --db),
// then DIR, with any URL in them redacted.
func exportRequest(c *cobra.Command, args []string) string {
	parts := []string{"fhirbulk", "export"}
	c.Flags().Visit(func(f *pflag.Flag) {
		if f.Name == "db" {
			return
		}
		if f.Value.Type() == "bool" {
			parts = append(parts, "--"+f.Name)
			return
		}
		v := f.Value.String()
		switch fv := f.Value.(type) {
		case pflag.SliceValue:
			v = strings.Join(fv.GetSlice(), ",")
		case *sizeValue:
			v = fv.text()
		}
		parts = append(parts, shellQuote("--"+f.Name+"="+v))
	})
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return source.RedactText(strings.Join(parts, " "))
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that need no quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func deletedCount(m *bulkdata.Manifest) int64 {
	var n int64
	for _, f := range m.Deleted {
		n += *f.Count
	}
	return n
}

func errorCount(m *bulkdata.Manifest) int64 {
	var n int64
	for _, f := range m.Error {
		n += *f.Count
	}
	return n
}
