package bulkimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Request is what an import was asked to run.
type Request struct {
	Manifest string    // a manifest file, or "-" for stdin; "" when resuming
	Stdin    io.Reader // read for "-"
	Resume   string    // the id of an import to run again, with the manifest it recorded
	// What a detached child is told by its parent: the id, and where the
	// manifest it reads from stdin came from.
	RunID        string
	ManifestDir  string
	ManifestPath string
	// AllowOutside lets the manifest's urls name local files outside its
	// folder (see Where).
	AllowOutside bool
}

// Plan is an import ready to run: its manifest (also as read, for a
// detached child) and its id.
type Plan struct {
	Manifest *Manifest
	Raw      []byte
	ID       string
	fromPath bool // ID is made of the manifest's path: Into adds the database
}

// Into settles the plan's id for the database db the import loads into:
// the id made of a bulk export's path (IDFor) names the database too, so
// that one export imported into several databases (staging, then
// production) is an import for each. Other ids are as given: their state
// records the database, and Run refuses another (OtherDatabaseError).
func (p *Plan) Into(db pg.Identity) {
	if p.fromPath {
		p.ID = IDFor(p.Manifest.Path, db)
		p.fromPath = false
	}
}

// Plan reads the manifest a request names and settles the import's id: the
// one a parent chose, else the manifest's, else the resumed import's, else
// for a bulk export one made of its path (and of the database: see Into),
// else a new one. A manifest that cannot be run is a *ManifestError; a bad id in
// the request is a *RequestIDError (wrapping ErrBadID).
//
// The manifest is read as bulkdata.ReadFile reads it: at most
// bulkdata.MaxFileSize, and given up (ctx.Err()) when ctx ends, even while
// it waits for a FIFO's writer.
func (s Store) Plan(ctx context.Context, req Request, now time.Time) (*Plan, error) {
	for _, v := range []struct{ field, id string }{{"Resume", req.Resume}, {"RunID", req.RunID}} {
		if v.id != "" && CheckID(v.id) != nil {
			return nil, &RequestIDError{Field: v.field, ID: v.id}
		}
	}
	spec := req.Manifest
	if req.Resume != "" {
		st, err := s.Read(req.Resume)
		if err != nil {
			return nil, err
		}
		if st.Manifest == "" {
			return nil, fmt.Errorf("import %q was read from stdin: run fhirbulk import with its manifest again", req.Resume)
		}
		spec = st.Manifest
	}
	m, raw, err := readAny(ctx, spec, req)
	if err != nil {
		return nil, err
	}
	path := m.Path
	if req.Resume != "" && m.ID != "" && m.ID != req.Resume {
		return nil, fmt.Errorf("the manifest %s now has id %q, not %q", path, m.ID, req.Resume)
	}
	id := req.RunID
	for _, v := range []string{m.ID, req.Resume} {
		if id == "" {
			id = v
		}
	}
	fromPath := false
	if id == "" && m.FromExport && m.Path != "" {
		id, fromPath = IDFor(m.Path, pg.Identity{}), true
	}
	if id == "" {
		id = NewID(now)
	}
	return &Plan{Manifest: m, Raw: raw, ID: id, fromPath: fromPath}, nil
}

// readAny reads what spec names: a folder (ReadFolder), a manifest file or
// stdin, in this tool's shape or HL7's, or a bucket's prefix or manifest
// object (ReadBucket); file:///PATH is PATH. It returns the manifest's bytes
// too (nil for a folder without a manifest).
func readAny(ctx context.Context, spec string, req Request) (*Manifest, []byte, error) {
	if bucket.Is(spec) {
		return ReadBucket(ctx, spec, req.AllowOutside)
	}
	if source.URLScheme(spec) == "file" {
		p, err := source.FilePath(spec)
		if err != nil {
			return nil, nil, manifestErr("%s: %v", source.Redact(spec), err)
		}
		spec = p
	}
	if spec != "-" {
		abs, err := filepath.Abs(spec)
		if err != nil {
			return nil, nil, err
		}
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			m, err := ReadFolder(ctx, abs, req.AllowOutside)
			return m, nil, err
		}
	}
	raw, dir, path, err := readManifest(ctx, spec, req)
	if err != nil {
		return nil, nil, err
	}
	w := Where{Dir: dir, Path: path, AllowOutside: req.AllowOutside}
	var m *Manifest
	if bulkdata.IsManifest(raw) {
		m, err = ParseHL7(raw, w)
	} else {
		m, err = ParseManifest(raw, w)
	}
	return m, raw, err
}

// readManifest returns the manifest's bytes, the folder its relative paths
// start from, and its absolute path ("" for stdin).
func readManifest(ctx context.Context, spec string, req Request) (data []byte, dir, path string, err error) {
	if spec == "-" {
		if req.Stdin == nil {
			return nil, "", "", errors.New("manifest: stdin is not available")
		}
		if data, err = bulkdata.ReadAll(ctx, req.Stdin); err != nil {
			return nil, "", "", fmt.Errorf("manifest: stdin: %w", err)
		}
		dir, path = req.ManifestDir, req.ManifestPath
		if dir == "" {
			if dir, err = os.Getwd(); err != nil {
				return nil, "", "", err
			}
		}
		return data, dir, path, nil
	}
	if path, err = filepath.Abs(spec); err != nil {
		return nil, "", "", err
	}
	if data, err = bulkdata.ReadFile(ctx, path); err != nil {
		return nil, "", "", fsutil.FileError("manifest", spec, err)
	}
	return data, filepath.Dir(path), path, nil
}

// Detached is an import started by Detach.
type Detached struct {
	PID   int
	Ended bool // it ran to its end before Detach looked (a small import)
}

// startWait bounds how long Detach waits for the child's state file.
const startWait = 30 * time.Second

// Detach starts import id in a process of its own (exe with args: it must
// run the import, reading the manifest from stdin), in a session of its
// own, without a terminal, its output going to the import's log. The
// manifest goes to it through a pipe and env (its environment) carries
// what must not be listed with its arguments, such as the database URL.
// Detach returns once the child's state file exists, so that `status ID`
// works at once, or with the child's last words if it stopped without one.
func (s Store) Detach(ctx context.Context, id string, manifest []byte, exe string, args, env []string) (Detached, error) {
	if s.Running(id) {
		return Detached{}, fmt.Errorf("import %q %w", id, ErrRunning)
	}
	if err := s.mkdir(); err != nil {
		return Detached{}, err
	}
	logf, err := s.OpenLog(id)
	if err != nil {
		return Detached{}, err
	}
	defer logf.Close()
	child := exec.Command(exe, args...)
	child.Env = env
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = DetachedProcAttr()
	in, err := child.StdinPipe()
	if err != nil {
		return Detached{}, err
	}
	if err := child.Start(); err != nil {
		return Detached{}, fmt.Errorf("start the detached import: %w", err)
	}
	in.Write(manifest) // a child that died early is reported below
	in.Close()
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	started := func() bool {
		st, err := s.Read(id)
		return err == nil && st.PID == child.Process.Pid
	}
	deadline := time.After(startWait)
	for {
		select {
		case <-exited:
			if started() { // its state file tells how it went
				return Detached{PID: child.Process.Pid, Ended: true}, nil
			}
			return Detached{}, fmt.Errorf("the detached import stopped at once: %s", lastLine(logf))
		case <-deadline:
			return Detached{}, fmt.Errorf("the detached import (pid %d) did not start within %s: see %s", child.Process.Pid, startWait, s.LogPath(id))
		case <-ctx.Done():
			return Detached{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if started() {
			return Detached{PID: child.Process.Pid}, nil
		}
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
		return strings.TrimPrefix(last, "fhirbulk: ")
	}
	return "no message (see " + log.Name() + ")"
}

// RequestIDError is a Request whose Resume or RunID (Field) is not an
// import id (CheckID); it wraps ErrBadID.
type RequestIDError struct {
	Field string
	ID    string
}

func (e *RequestIDError) Error() string { return fmt.Sprintf("%s %q: %v", e.Field, e.ID, ErrBadID) }
func (e *RequestIDError) Unwrap() error { return ErrBadID }

// FailedError is an import that ended with some of its inputs failed (the
// others are loaded).
type FailedError struct {
	ID             string
	Failed, Inputs int
	Reason         string // a pull that failed as a whole: why
}

func (e *FailedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("import %s failed: %s", e.ID, e.Reason)
	}
	return fmt.Sprintf("import %s failed: %d of %d inputs failed", e.ID, e.Failed, e.Inputs)
}

// Failed is how many of st's inputs failed.
func (st *State) Failed() int {
	n := 0
	for _, in := range st.Inputs {
		if in.Status == StatusFailed {
			n++
		}
	}
	return n
}

// Err is the error a run that ended in st stands for: nil when it did not
// fail, else a *FailedError.
func (st *State) Err() error {
	if st.Status != StatusFailed {
		return nil
	}
	e := &FailedError{ID: st.ID, Failed: st.Failed(), Inputs: len(st.Inputs)}
	if st.Pull != nil && st.Pull.Error != "" {
		e.Reason = st.Pull.Error
	}
	return e
}
