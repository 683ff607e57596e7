package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// importOptions are import's flags, also handed to a detached child.
type importOptions struct {
	read         readFlags
	aidbox       bool
	maxErrors    int
	preserveMeta bool
	noFmtCheck   bool
	detach       bool
	parallel     int
	fhir         bool
	force        bool
	stateDir     string
	resume       string
	allowOutside bool
	noOrderCheck bool
	pull         pullFlags
	// Hidden: how a detached child is told what its parent decided.
	runID        string
	manifestDir  string
	manifestPath string
}

func (a *app) importCmd() *cobra.Command {
	var f importOptions
	c := &cobra.Command{
		Use:   "import MANIFEST | import URL/$export | import --resume ID",
		Short: "Load the inputs of a manifest in parallel, resumably, tracked in a state file",
		Long: `Load every input of a manifest, several at a time, each input in one
transaction, with its progress in a state file that 'fhirbulk status' reads.
Run it again (or with --resume ID) after an interruption, and only the inputs
that did not finish load again. MANIFEST is one of:

  - a manifest of fhirbulk's own (JSON or YAML, below; - for stdin)
  - an HL7 Bulk Data manifest (what a server's $export, or fhirbulk export,
    writes: output, deleted), its deletions applied
  - a bulk export folder: its manifest.json, or else every *.ndjson(.gz) in
    it, each file's type told by its name (Patient.ndjson, 1.Patient.ndjson)
  - the same in a bucket: a prefix (s3://b/export/, gs://, azblob://) read
    as a folder, or a manifest object (s3://b/export/manifest.json); the
    state stays local
  - a FHIR server's Bulk Data kick-off endpoint ([base]/$export,
    [base]/Patient/$export, [base]/Group/ID/$export): the export is kicked
    off, polled, and its files streamed in, then released (DELETE); with
    SMART Backend Services (--client-id, --private-key), a bearer token
    file or basic auth; resumed without a second kick-off; --since last
    pulls what changed since the last completed pull of the same request

  id: synthea                                  # optional: generated when absent
  inputFormat: application/fhir+ndjson         # FHIR; application/ndjson or none: Aidbox
  contentEncoding: gzip                        # optional: gzip is detected
  update: false                                # true keeps history, as load --history
  inputs:
  - resourceType: Patient
    url: ./Patient.ndjson.gz                   # a path (relative to the manifest) or a URL (http(s), s3, gs, azblob)

The database is reached once before anything starts (a wrong --db is one
line, exit 1, nothing started). The state records it: the same import (its
id, or --resume) against another database is refused (--force starts it
over there); a bulk export's import id is made of its path and the
database, so one export can be imported into several.

A local url (a relative path, an absolute one, file:///PATH) must name a
file inside the manifest's folder (.. and symbolic links resolved), and a
relative url in a bucket's manifest an object under its prefix, unless
--allow-outside is given.

An incremental export (fhirbulk export --since-manifest) must come after
the export it follows: one imported before it, or after a later one, is
refused (exit 1), naming the export to import first; --no-order-check
imports it anyway.

Without --detach it runs in the foreground and prints the final status as
JSON; exit status 0 when every input finished, 1 when any failed.`,
		Example: `  fhirbulk import synthea.yaml
  fhirbulk import /exports/2026-12-01          # a bulk export folder
  fhirbulk import s3://exports/2026-12-01/     # the same in a bucket
  fhirbulk import --detach synthea.yaml && fhirbulk status synthea --watch
  fhirbulk import --resume synthea
  fhirbulk import --since last --client-id app --private-key app.pem https://ehr/fhir/Group/g1/\$export`,
		Args: func(c *cobra.Command, args []string) error {
			switch {
			case f.pull.cancel != "" && (len(args) > 0 || f.resume != ""):
				return usagef("--cancel ID takes no URL or --resume")
			case f.pull.cancel != "":
				return nil
			case f.resume == "" && len(args) == 1 && !f.pull.isPull(args[0]) && len(f.pull.given(c)) > 0:
				return usagef("%s: only for an import from a server's $export (a URL ending in /$export, or --kick-off)", strings.Join(f.pull.given(c), ", "))
			case f.resume != "" && len(args) > 0:
				return usagef("give a MANIFEST or --resume ID, not both")
			case f.resume == "" && len(args) != 1:
				return usagef("import takes one MANIFEST (a file, an export folder, a bucket URL, or - for stdin), or --resume ID")
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.BoolVar(&f.detach, "detach", false, "run in a background process; print the id and return")
	fl.IntVar(&f.parallel, "parallel", 2, "load `N` inputs at a time")
	fl.BoolVar(&f.fhir, "fhir", false, "every input is in FHIR format (as inputFormat: application/fhir+ndjson)")
	fl.BoolVar(&f.aidbox, "aidbox", false, "every input is in Aidbox format (a bulk export's data is taken for FHIR otherwise)")
	fl.IntVar(&f.maxErrors, "max-errors", 0, "skip up to `N` bad lines per input (into an errors file in the state folder)")
	fl.BoolVar(&f.preserveMeta, "preserve-meta", false, "meta.versionId and meta.lastUpdated set txid and ts (an exact restore, deletions included)")
	fl.BoolVar(&f.noFmtCheck, "no-format-check", false, "do not check the first lines of each input for the other format (FHIR or Aidbox)")
	fl.BoolVar(&f.force, "force", false, "load every input again, even of an import that finished or that ran against another database")
	fl.StringVar(&f.stateDir, "state-dir", "", "state files' `DIR` (default $FHIRBULK_STATE_DIR, $XDG_STATE_HOME/fhirbulk, ~/.local/state/fhirbulk)")
	fl.StringVar(&f.resume, "resume", "", "resume import `ID` with the manifest it recorded")
	fl.BoolVar(&f.allowOutside, "allow-outside", false, "let the manifest name local files outside its own folder (objects outside its prefix)")
	fl.BoolVar(&f.noOrderCheck, "no-order-check", false, "import an incremental export even if the export it follows was not imported (or a later one was)")
	f.read.register(c)
	f.pull.register(c)
	fl.StringVar(&f.runID, "run-id", "", "")
	fl.StringVar(&f.manifestDir, "manifest-dir", "", "")
	fl.StringVar(&f.manifestPath, "manifest-path", "", "")
	for _, h := range []string{"run-id", "manifest-dir", "manifest-path"} {
		fl.MarkHidden(h) // the flags exist
	}
	a.dbFlag(c)
	c.ValidArgsFunction = completeFiles("json", "yaml", "yml")
	mustComplete(c, "resume", a.completeImportIDs(&f.stateDir))
	mustComplete(c, "state-dir", completeDirs)
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		f.pull.changed(c)
		return a.runImport(ctx, f, args)
	})
	return c
}

// runImport imports the MANIFEST of args, or the import f.resume names.
func (a *app) runImport(ctx context.Context, f importOptions, args []string) error {
	if f.pull.cancel != "" {
		return a.runCancel(ctx, f.stateDir, f.pull.cancel)
	}
	if f.parallel < 1 {
		return usagef("--parallel: must be at least 1")
	}
	if f.maxErrors < 0 {
		return usagef("--max-errors: must not be negative")
	}
	if f.fhir && f.aidbox {
		return usagef("give --fhir or --aidbox, not both")
	}
	if err := f.read.check(); err != nil {
		return err
	}
	dir, err := bulkimport.StateDir(f.stateDir, a.getenv)
	if err != nil {
		return usageError{err}
	}
	store := bulkimport.Store{Dir: dir}
	pull := len(args) == 1 && f.pull.isPull(args[0]) || f.resume != "" && store.IsPull(f.resume)
	if pull {
		return a.runPullImport(ctx, f, args, store)
	}
	req := bulkimport.Request{Stdin: a.stdin, Resume: f.resume, RunID: f.runID,
		ManifestDir: f.manifestDir, ManifestPath: f.manifestPath, AllowOutside: f.allowOutside}
	if len(args) == 1 {
		req.Manifest = args[0]
	}
	plan, err := store.Plan(ctx, req, time.Now())
	var me *bulkimport.ManifestError
	var badID *bulkimport.RequestIDError
	if errors.As(err, &badID) {
		return usagef("--%s %q: %v", map[string]string{"Resume": "resume", "RunID": "run-id"}[badID.Field], badID.ID, bulkimport.ErrBadID)
	} else if errors.As(err, &me) || errors.Is(err, bulkimport.ErrBadID) {
		return usageError{err}
	} else if err != nil {
		return err
	}
	dsn := pg.ResolveDSN(a.db, a.getenv)
	if _, err := pg.ParseDSN(dsn); err != nil {
		return err
	}
	// The database is reached once before anything starts: a wrong --db
	// is one line here, not a failure of every input (nor a detached
	// process and a state file), and its identity settles the id of a
	// bulk export's import and is checked against a resumed one's.
	db, err := bulkimport.Identify(ctx, dsn)
	if err != nil {
		return err
	}
	order, err := bulkimport.CheckOrder(store, plan.Manifest, db, !f.noOrderCheck)
	if err != nil {
		return err
	}
	plan.Into(db)
	opts := bulkimport.Options{DSN: dsn, DB: db, Store: store, Parallel: f.parallel, FHIR: f.fhir, Aidbox: f.aidbox, Force: f.force,
		Source: f.read.sourceOptions(a), MaxLineSize: int(f.read.maxLine), MaxErrors: f.maxErrors, PreserveMeta: f.preserveMeta,
		FormatCheck: fhirformat.CheckLines, FormatHint: importFormatHint, Words: lineWords}
	if f.noFmtCheck {
		opts.FormatCheck = 0
	}
	if f.detach {
		if err := bulkimport.Check(plan.Manifest, plan.ID, opts); err != nil {
			return err
		}
		return a.detach(ctx, store, plan, f, dsn)
	}
	bar := a.startImportDisplay()
	opts.Warn = func(err error) { bar.warn(a.stderr, "fhirbulk: "+message(err, true)) }
	opts.Progress = bar.progressFunc()
	st, err := bulkimport.Run(ctx, plan.Manifest, plan.ID, opts)
	bar.stop()
	if err != nil {
		return err
	}
	if st.Status == bulkimport.StatusFinished {
		if err := order.Record(plan.ID); err != nil {
			fmt.Fprintf(a.stderr, "fhirbulk: %s (the next import of its chain may be refused: --no-order-check)\n", errorLine(err))
		}
	}
	out, _ := json.MarshalIndent(st, "", "  ")
	if _, err := fmt.Fprintln(a.stdout, string(out)); err != nil {
		return err
	}
	if st.Status == bulkimport.StatusInterrupted {
		return ctx.Err()
	}
	return st.Err()
}

// runPullImport is runImport for a pull from a server.
func (a *app) runPullImport(ctx context.Context, f importOptions, args []string, store bulkimport.Store) error {
	if f.resume != "" && bulkimport.CheckID(f.resume) != nil {
		return usagef("--resume %q: %v", f.resume, bulkimport.ErrBadID)
	}
	dsn := pg.ResolveDSN(a.db, a.getenv)
	if _, err := pg.ParseDSN(dsn); err != nil {
		return err
	}
	db, err := bulkimport.Identify(ctx, dsn)
	if err != nil {
		return err
	}
	opts := bulkimport.Options{DSN: dsn, DB: db, Store: store, Parallel: f.parallel, FHIR: f.fhir, Aidbox: f.aidbox, Force: f.force,
		Source: f.read.sourceOptions(a), MaxLineSize: int(f.read.maxLine), MaxErrors: f.maxErrors, PreserveMeta: f.preserveMeta,
		FormatCheck: fhirformat.CheckLines, FormatHint: importFormatHint, Words: lineWords}
	if f.noFmtCheck {
		opts.FormatCheck = 0
	}
	raw := ""
	if len(args) == 1 {
		raw = args[0]
	}
	return a.runPull(ctx, f, raw, f.resume, opts)
}

// detach runs the import in a background process: this same program, told
// by hidden flags what this one decided.
func (a *app) detach(ctx context.Context, store bulkimport.Store, plan *bulkimport.Plan, f importOptions, dsn string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// A manifest goes to the child through its stdin; a folder by its path.
	spec := "-"
	if plan.Raw == nil {
		spec = plan.Manifest.Path
	}
	args := []string{"import", spec, "-q", "--state-dir", store.Dir, "--parallel", strconv.Itoa(f.parallel),
		"--max-errors", strconv.Itoa(f.maxErrors),
		"--run-id", plan.ID, "--manifest-dir", plan.Manifest.Dir,
		"--max-line-size", strconv.FormatInt(int64(f.read.maxLine), 10), "--http-idle-timeout", f.read.idleTimeout.String()}
	if plan.Manifest.Path != "" {
		args = append(args, "--manifest-path", plan.Manifest.Path)
	}
	for flag, on := range map[string]bool{"--fhir": f.fhir, "--aidbox": f.aidbox, "--preserve-meta": f.preserveMeta, "--no-format-check": f.noFmtCheck,
		"--allow-outside": f.allowOutside, "--no-order-check": f.noOrderCheck} {
		if on {
			args = append(args, flag)
		}
	}
	if f.force {
		args = append(args, "--force")
	}
	// The database URL goes in the environment: any user can list arguments.
	env := append(os.Environ(), "DATABASE_URL="+dsn)
	d, err := store.Detach(ctx, plan.ID, plan.Raw, exe, args, env)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, plan.ID)
	if d.Ended {
		fmt.Fprintf(a.stderr, "import %s ran in the background and has ended; see: fhirbulk status %s\n", plan.ID, plan.ID)
	} else {
		fmt.Fprintf(a.stderr, "import %s runs in the background (pid %d); follow it with: fhirbulk status %s --watch\n", plan.ID, d.PID, plan.ID)
	}
	return nil
}
