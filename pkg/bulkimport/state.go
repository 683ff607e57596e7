package bulkimport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// KindDeleted marks an input that is a file of deletions.
const KindDeleted = "deleted"

// Import and input statuses.
const (
	StatusPending     = "pending"
	StatusInProgress  = "in-progress"
	StatusFinished    = "finished"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
)

// State is an import's state file, after Aidbox's BulkImportStatus.
// Secrets never enter it: URLs are kept redacted (source.Redact), and each
// input's whole URL only as a hash, to tell on resume whether it changed.
type State struct {
	ID              string    `json:"id"`
	Status          string    `json:"status"`
	Time            StateTime `json:"time"`
	Type            string    `json:"type"` // fhir | aidbox
	ContentEncoding string    `json:"contentEncoding,omitempty"`
	Update          bool      `json:"update"`
	Manifest        string    `json:"manifest,omitempty"` // its path, for --resume
	// Database is the database the import loads into (no credentials:
	// see pg.Identity). A state file of an older version has none.
	Database *pg.Identity `json:"database,omitempty"`
	PID      int          `json:"pid,omitempty"`
	Inputs   []InputState `json:"inputs"`
	// Error lists, as HL7 does, the files of the lines inputs skipped
	// (OperationOutcome ndjson, in the state folder).
	Error []bulkdata.File `json:"error,omitempty"`
	// ServerErrors are the error files of the server that made the export
	// imported: named, not loaded.
	ServerErrors []string `json:"serverErrors,omitempty"`
	// Pull is where an import from a server's $export stands (see Pull);
	// nil for any other import.
	Pull *PullState `json:"pull,omitempty"`
}

// StateTime is when the import started and ended.
type StateTime struct {
	Start time.Time  `json:"start"`
	End   *time.Time `json:"end,omitempty"`
}

// InputState is one input's progress.
type InputState struct {
	ResourceType string `json:"resourceType"`
	URL          string `json:"url"`
	// URLHash is HashURL of the whole URL, query included: a new signed
	// URL redacts as the old one did but is another input. State files of
	// older versions have none.
	URLHash    string `json:"urlHash,omitempty"`
	Status     string `json:"status"`
	Total      int64  `json:"total"` // resources loaded (lines read while in progress)
	BytesRead  int64  `json:"bytesRead,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
	Storing    bool   `json:"storing,omitempty"` // all read; the server stores it
	// Kind is "deleted" for a file of deletions (applied after the other
	// inputs), whose Deleted and Absent count what it did.
	Kind     string `json:"kind,omitempty"`
	Deleted  int64  `json:"deleted,omitempty"`
	Absent   int64  `json:"absent,omitempty"`
	Skipped  int64  `json:"skipped,omitempty"` // bad lines skipped (--max-errors)
	Duration int64  `json:"duration"`          // milliseconds
	Error    string `json:"error,omitempty"`
}

// HashURL is what the state file keeps of an input's whole URL (or path):
// "sha256:" and the hex digest.
func HashURL(u string) string {
	sum := sha256.Sum256([]byte(u))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pending is the input as it is before it loads: what identifies it, and
// nothing of a load that did not commit.
func (in InputState) pending() InputState {
	return InputState{ResourceType: in.ResourceType, URL: in.URL, URLHash: in.URLHash, Kind: in.Kind, Status: StatusPending}
}

// fail marks the input failed with err. What it read is forgotten: its
// transaction rolled back, so none of it is in the database.
func (in *InputState) fail(err error) {
	duration := in.Duration
	*in = in.pending()
	in.Status, in.Error, in.Duration = StatusFailed, oneLine(err.Error()), duration
}

// Done counts the inputs that finished, and the resources they loaded: what
// is committed, not the lines an input at work has read so far (nor those
// a failed one had read: they were rolled back).
func (s *State) Done() (inputs int, resources int64) {
	for _, in := range s.Inputs {
		if in.Status == StatusFinished {
			inputs++
			resources += in.Total
		}
	}
	return inputs, resources
}

// clone is a copy of s that shares nothing mutable with it.
func (s *State) clone() State {
	cp := *s
	cp.Inputs = append(make([]InputState, 0, len(s.Inputs)), s.Inputs...) // [] in JSON, never null
	if s.Database != nil {
		db := *s.Database
		cp.Database = &db
	}
	if s.Time.End != nil {
		end := *s.Time.End
		cp.Time.End = &end
	}
	cp.Pull = s.Pull.clone()
	return cp
}

var importID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ErrNoStateDir is StateDir's error when nothing names the state folder:
// no flag, no FHIRBULK_STATE_DIR, XDG_STATE_HOME or HOME.
var ErrNoStateDir = errors.New("no state folder")

// ErrBadID is returned for an import id that breaks the rule of CheckID.
var ErrBadID = errors.New("not an import id: 1 to 128 letters, digits, '.', '_' and '-', starting with a letter or digit")

// CheckID reports whether id is a valid import id. An id names files in the
// state folder, so anything that could name another path ("../x", "a/b")
// is refused.
func CheckID(id string) error {
	if !importID.MatchString(id) {
		return ErrBadID
	}
	return nil
}

// StateDir picks the folder of state files: --state-dir, else
// $FHIRBULK_STATE_DIR, else $XDG_STATE_HOME/fhirbulk, else
// ~/.local/state/fhirbulk.
// The folder is made absolute: the state names files in it.
func StateDir(flag string, getenv func(string) string) (string, error) {
	var dir string
	switch {
	case flag != "":
		dir = flag
	case getenv("FHIRBULK_STATE_DIR") != "":
		dir = getenv("FHIRBULK_STATE_DIR")
	case getenv("XDG_STATE_HOME") != "":
		dir = filepath.Join(getenv("XDG_STATE_HOME"), "fhirbulk")
	case getenv("HOME") != "":
		dir = filepath.Join(getenv("HOME"), ".local", "state", "fhirbulk")
	default:
		return "", ErrNoStateDir
	}
	return filepath.Abs(dir)
}

// Store is a folder of state files: ID.json (the state), ID.lock (held
// while the import runs) and ID.log (a detached import's messages). None of
// them is opened through a symbolic link: one planted in the folder would
// have us write to, or show, whatever file it names.
type Store struct {
	Dir  string
	Live *Live // when set, Run records here the imports it runs (see Live)
}

func (s Store) path(id string) string { return filepath.Join(s.Dir, id+".json") }

// ErrorsPath is the file of the lines input i of import id skipped.
func (s Store) ErrorsPath(id string, i int) string {
	return filepath.Join(s.Dir, fmt.Sprintf("%s.errors.%d.ndjson", id, i))
}

// WriteErrors replaces the errors file of input i of import id with data.
func (s Store) WriteErrors(id string, i int, data []byte) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if err := fsutil.WriteFile(s.ErrorsPath(id, i), data, 0o600); err != nil {
		return fsutil.FileError("errors file", s.ErrorsPath(id, i), err)
	}
	return nil
}

// LogPath is where a detached import writes its messages.
func (s Store) LogPath(id string) string { return filepath.Join(s.Dir, id+".log") }

// OpenLog opens (creates) import id's log for appending, and for reading
// back what was written.
func (s Store) OpenLog(id string) (*os.File, error) {
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("import %q: %w", id, err)
	}
	if err := s.mkdir(); err != nil {
		return nil, err
	}
	return openState(s.LogPath(id), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
}

func (s Store) mkdir() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fsutil.FileError("state folder", s.Dir, err)
	}
	return nil
}

// openState opens a file of the state folder only if it is a regular file,
// and never through a symbolic link (fsutil.OpenNoFollow: a planted FIFO
// does not block the open either).
func openState(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := fsutil.OpenNoFollow(path, flag, perm)
	if err != nil {
		return nil, stateFileError(path, err)
	}
	return f, nil
}

// stateFileError says err about the state file at path.
func stateFileError(path string, err error) error {
	switch {
	case errors.Is(err, fsutil.ErrSymlink):
		return fmt.Errorf("state file %s is a symbolic link: not followed", path)
	case errors.Is(err, fsutil.ErrNotRegular):
		return fmt.Errorf("state file %s is not a regular file", path)
	}
	return fsutil.FileError("state file", path, err)
}

// lockFile opens (creates) the lock file at path and locks it, or fails
// with ErrRunning.
func lockFile(path string) (*os.File, error) {
	f, err := fsutil.LockFile(path)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, ErrRunning
	}
	if err != nil {
		return nil, stateFileError(path, err)
	}
	return f, nil
}

// Write saves st atomically (a temporary file renamed over the old one),
// readable by its owner only.
func (s Store) Write(st *State) error {
	if err := CheckID(st.ID); err != nil {
		return fmt.Errorf("import %q: %w", st.ID, err)
	}
	if err := s.mkdir(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(s.path(st.ID), append(data, '\n'), 0o600); err != nil {
		return fsutil.FileError("state file", s.path(st.ID), err)
	}
	return nil
}

// ErrUnknown is returned for an import id without a state file.
var ErrUnknown = errors.New("no such import")

// Read loads an import's state, with its status as it really is: an import
// recorded in progress whose process is gone is interrupted, and its inputs
// that were in progress are pending again (their transactions rolled back).
func (s Store) Read(id string) (*State, error) {
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("import %q: %w", id, err)
	}
	f, err := openState(s.path(id), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %q in %s", ErrUnknown, id, s.Dir)
	}
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fsutil.FileError("state file", s.path(id), err)
	}
	st := &State{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("state file %s: %v", s.path(id), err)
	}
	if st.Status == StatusInProgress && !s.Running(id) && !s.runsHere(id) {
		st.Status = StatusInterrupted
		for i := range st.Inputs {
			if st.Inputs[i].Status == StatusInProgress {
				st.Inputs[i] = st.Inputs[i].pending()
			}
		}
	}
	return st, nil
}

// runsHere reports whether this process runs import id (see Live).
func (s Store) runsHere(id string) bool {
	if s.Live == nil {
		return false
	}
	_, ok := s.Live.ids.Load(id)
	return ok
}

// Live is the imports a process runs itself, for a process that also reads
// their states (fhirbulk serve): a lock the process holds may not show to
// its own test (POSIX record locks are per process).
type Live struct{ ids sync.Map }

// List loads every import's state, oldest first.
func (s Store) List() ([]*State, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*State
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		st, err := s.Read(strings.TrimSuffix(name, ".json"))
		if err != nil {
			continue // a stray file: not ours to judge here
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Start.Before(out[j].Time.Start) })
	return out, nil
}

// Lock is held by the process that runs an import, for as long as it runs.
// The operating system drops it when the process dies, however it dies, and
// another process can test it without taking it (fsutil.LockFile).
type Lock struct{ f *os.File }

// ErrRunning is returned when another process runs the import.
var ErrRunning = errors.New("is running")

func (s Store) lockPath(id string) string { return filepath.Join(s.Dir, id+".lock") }

// Lock takes the import's lock, or fails with ErrRunning.
func (s Store) Lock(id string) (*Lock, error) {
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("import %q: %w", id, err)
	}
	if err := s.mkdir(); err != nil {
		return nil, err
	}
	f, err := lockFile(s.lockPath(id))
	if errors.Is(err, ErrRunning) {
		return nil, fmt.Errorf("import %q %w", id, ErrRunning)
	}
	if err != nil {
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close() // closing drops the lock
		l.f = nil
	}
}

// Running reports whether another live process holds the import's lock.
func (s Store) Running(id string) bool {
	if CheckID(id) != nil {
		return false
	}
	return fsutil.LockHeld(s.lockPath(id))
}
