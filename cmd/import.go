package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
)

// importFlags are import's flags, also handed to a detached child.
type importFlags struct {
	read     readFlags
	detach   bool
	parallel int
	fhir     bool
	force    bool
	stateDir string
	resume   string
	// Hidden: how a detached child is told what its parent decided.
	runID        string
	manifestDir  string
	manifestPath string
}

func (a *app) importCmd() *cobra.Command {
	var f importFlags
	c := &cobra.Command{
		Use:   "import MANIFEST | import --resume ID",
		Short: "Load the inputs of a manifest in parallel, resumably, tracked in a state file",
		Long: `Load every input of a manifest (JSON or YAML; - for stdin), several at a
time, each input in one transaction, with its progress in a state file that
'fhirbulk status' reads. Run it again (or with --resume ID) after an
interruption, and only the inputs that did not finish load again.

  id: synthea                                  # optional: generated when absent
  inputFormat: application/fhir+ndjson         # FHIR format; otherwise Aidbox format
  contentEncoding: gzip                        # optional: gzip is detected
  update: false                                # true keeps history, as load --history
  inputs:
  - resourceType: Patient
    url: ./Patient.ndjson.gz                   # a path (relative to the manifest) or an http(s) URL

Without --detach it runs in the foreground and prints the final status as
JSON; exit status 0 when every input finished, 1 when any failed.`,
		Example: `  fhirbulk import synthea.yaml
  fhirbulk import --detach synthea.yaml && fhirbulk status synthea --watch
  fhirbulk import --resume synthea`,
		Args: func(c *cobra.Command, args []string) error {
			switch {
			case f.resume != "" && len(args) > 0:
				return usagef("give a MANIFEST or --resume ID, not both")
			case f.resume == "" && len(args) != 1:
				return usagef("import takes one MANIFEST (a file, or - for stdin), or --resume ID")
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.BoolVar(&f.detach, "detach", false, "run in a background process; print the id and return")
	fl.IntVar(&f.parallel, "parallel", 2, "load `N` inputs at a time")
	fl.BoolVar(&f.fhir, "fhir", false, "every input is in FHIR format (as inputFormat: application/fhir+ndjson)")
	fl.BoolVar(&f.force, "force", false, "load every input again, even of an import that finished")
	fl.StringVar(&f.stateDir, "state-dir", "", "state files' `DIR` (default $FHIRBULK_STATE_DIR, $XDG_STATE_HOME/fhirbulk, ~/.local/state/fhirbulk)")
	fl.StringVar(&f.resume, "resume", "", "resume import `ID` with the manifest it recorded")
	f.read.register(c)
	fl.StringVar(&f.runID, "run-id", "", "")
	fl.StringVar(&f.manifestDir, "manifest-dir", "", "")
	fl.StringVar(&f.manifestPath, "manifest-path", "", "")
	for _, h := range []string{"run-id", "manifest-dir", "manifest-path"} {
		fl.MarkHidden(h) //nolint:errcheck // the flags exist
	}
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		if f.parallel < 1 {
			return usagef("--parallel: must be at least 1")
		}
		if err := f.read.check(); err != nil {
			return err
		}
		for _, fl := range []struct{ name, id string }{{"--resume", f.resume}, {"--run-id", f.runID}} {
			if fl.id != "" && bulkimport.CheckID(fl.id) != nil {
				return usagef("%s %q: %v", fl.name, fl.id, bulkimport.ErrBadID)
			}
		}
		dir, err := bulkimport.StateDir(f.stateDir, a.getenv)
		if err != nil {
			return usageError{err}
		}
		store := bulkimport.Store{Dir: dir}
		spec := ""
		if len(args) == 1 {
			spec = args[0]
		}
		if f.resume != "" {
			st, err := store.Read(f.resume)
			if err != nil {
				return err
			}
			if st.Manifest == "" {
				return fmt.Errorf("import %q was read from stdin: run fhirbulk import with its manifest again", f.resume)
			}
			spec = st.Manifest
		}
		data, mdir, mpath, err := a.readManifest(spec, f)
		if err != nil {
			return err
		}
		m, err := bulkimport.ParseManifest(data, mdir, mpath)
		var me *bulkimport.ManifestError
		if errors.As(err, &me) {
			return usageError{err}
		} else if err != nil {
			return err
		}
		id := firstOf(f.runID, m.ID, f.resume)
		if f.resume != "" && m.ID != "" && m.ID != f.resume {
			return fmt.Errorf("the manifest %s now has id %q, not %q", mpath, m.ID, f.resume)
		}
		if id == "" {
			id = bulkimport.NewID(time.Now())
		}
		dsn := pg.ResolveDSN(a.db, a.getenv)
		if f.detach {
			return a.detach(ctx, store, id, data, mdir, m, f, dsn)
		}
		opts := bulkimport.Options{DSN: dsn, Store: store, Parallel: f.parallel, FHIR: f.fhir, Force: f.force,
			Source: f.read.sourceOptions(a), MaxLineSize: int(f.read.maxLine)}
		show := progress.Enabled(a.stderr, a.quiet)
		var bar *progress.Bar
		if show {
			bar = progress.New(a.stderr, true, -1, "import "+id, "resources")
			opts.Progress = func(st bulkimport.State) {
				done, n := st.Done()
				bar.Set(n, fmt.Sprintf("import %s: %d/%d inputs", id, done, len(st.Inputs)))
			}
		}
		st, err := bulkimport.Run(ctx, m, id, opts)
		bar.Finish()
		if err != nil {
			return err
		}
		out, _ := json.MarshalIndent(st, "", "  ")
		if _, err := fmt.Fprintln(a.stdout, string(out)); err != nil {
			return err
		}
		switch st.Status {
		case bulkimport.StatusInterrupted:
			return ctx.Err()
		case bulkimport.StatusFailed:
			failed := 0
			for _, in := range st.Inputs {
				if in.Status == bulkimport.StatusFailed {
					failed++
				}
			}
			return fmt.Errorf("import %s failed: %d of %d inputs failed (fhirbulk status %s)", id, failed, len(st.Inputs), id)
		}
		return nil
	})
	return c
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// readManifest returns the manifest's bytes, the folder its relative paths
// start from, and its absolute path ("" for stdin).
func (a *app) readManifest(spec string, f importFlags) (data []byte, dir, path string, err error) {
	if spec == "-" {
		data, err = io.ReadAll(a.stdin)
		if err != nil {
			return nil, "", "", err
		}
		dir, path = f.manifestDir, f.manifestPath
		if dir == "" {
			if dir, err = os.Getwd(); err != nil {
				return nil, "", "", err
			}
		}
		return data, dir, path, nil
	}
	path, err = filepath.Abs(spec)
	if err != nil {
		return nil, "", "", err
	}
	data, err = os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", "", usagef("manifest %s: %v", spec, err)
	}
	return data, filepath.Dir(path), path, nil
}

// detach starts the import in a process of its own (its own session, no
// terminal, stdin/stdout/stderr not the parent's) and returns once its state
// file exists. The manifest goes to the child through a pipe, the database
// URL through its environment (not its arguments, which any user can list).
func (a *app) detach(ctx context.Context, store bulkimport.Store, id string, manifest []byte, mdir string, m *bulkimport.Manifest, f importFlags, dsn string) error {
	if store.Running(id) {
		return fmt.Errorf("import %q %v", id, bulkimport.ErrRunning)
	}
	if err := os.MkdirAll(store.Dir, 0o700); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"import", "-", "-q", "--state-dir", store.Dir, "--parallel", strconv.Itoa(f.parallel),
		"--run-id", id, "--manifest-dir", mdir,
		"--max-line-size", strconv.FormatInt(int64(f.read.maxLine), 10), "--http-idle-timeout", f.read.idleTimeout.String()}
	if m.Path != "" {
		args = append(args, "--manifest-path", m.Path)
	}
	if f.fhir {
		args = append(args, "--fhir")
	}
	if f.force {
		args = append(args, "--force")
	}
	logf, err := store.OpenLog(id)
	if err != nil {
		return err
	}
	defer logf.Close()
	child := exec.Command(exe, args...)
	child.Env = append(os.Environ(), "DATABASE_URL="+dsn)
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = bulkimport.DetachedProcAttr()
	in, err := child.StdinPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	in.Write(manifest) //nolint:errcheck // a child that died early is reported below
	in.Close()
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(30 * time.Second)
	started := func() bool {
		st, err := store.Read(id)
		return err == nil && st.PID == child.Process.Pid
	}
	for {
		select {
		case <-exited:
			// It may have run to its end already (a small import): then its
			// state file tells how it went, as for any detached import.
			if started() {
				fmt.Fprintln(a.stdout, id)
				fmt.Fprintf(a.stderr, "import %s ran in the background and has ended; see: fhirbulk status %s\n", id, id)
				return nil
			}
			return fmt.Errorf("the detached import stopped at once: %s", lastLine(logf))
		case <-deadline:
			return fmt.Errorf("the detached import (pid %d) did not start within 30s: see %s", child.Process.Pid, store.LogPath(id))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if !started() {
			continue
		}
		fmt.Fprintln(a.stdout, id)
		fmt.Fprintf(a.stderr, "import %s runs in the background (pid %d); follow it with: fhirbulk status %s --watch\n", id, child.Process.Pid, id)
		return nil
	}
}

// lastLine is the last non-empty line of the log, for an error message.
// It is read from the file the child wrote to, not opened again by name.
func lastLine(log *os.File) string {
	const tail = 4 << 10
	size := int64(0)
	if fi, err := log.Stat(); err == nil {
		size = fi.Size()
	}
	data, _ := io.ReadAll(io.NewSectionReader(log, max(size-tail, 0), tail))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return printable(strings.TrimPrefix(last, "fhirbulk: "))
	}
	return "no message (see " + log.Name() + ")"
}
