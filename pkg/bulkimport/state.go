package bulkimport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Import and input statuses.
const (
	StatusPending     = "pending"
	StatusInProgress  = "in-progress"
	StatusFinished    = "finished"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
)

// State is an import's state file, after Aidbox's BulkImportStatus.
// Secrets never enter it: URLs are kept redacted (source.Redact).
type State struct {
	ID              string       `json:"id"`
	Status          string       `json:"status"`
	Time            StateTime    `json:"time"`
	Type            string       `json:"type"` // fhir | aidbox
	ContentEncoding string       `json:"contentEncoding,omitempty"`
	Update          bool         `json:"update"`
	Manifest        string       `json:"manifest,omitempty"` // its path, for --resume
	PID             int          `json:"pid,omitempty"`
	Inputs          []InputState `json:"inputs"`
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
	Status       string `json:"status"`
	Total        int64  `json:"total"` // resources loaded (lines read while in progress)
	BytesRead    int64  `json:"bytesRead,omitempty"`
	BytesTotal   int64  `json:"bytesTotal,omitempty"`
	Duration     int64  `json:"duration"` // milliseconds
	Error        string `json:"error,omitempty"`
}

// Done counts the inputs that finished, and the resources they loaded.
func (s *State) Done() (inputs int, resources int64) {
	for _, in := range s.Inputs {
		if in.Status == StatusFinished {
			inputs++
		}
		resources += in.Total
	}
	return inputs, resources
}

// StateDir picks the folder of state files: --state-dir, else
// $FHIRBULK_STATE_DIR, else $XDG_STATE_HOME/fhirbulk, else
// ~/.local/state/fhirbulk.
func StateDir(flag string, getenv func(string) string) (string, error) {
	switch {
	case flag != "":
		return flag, nil
	case getenv("FHIRBULK_STATE_DIR") != "":
		return getenv("FHIRBULK_STATE_DIR"), nil
	case getenv("XDG_STATE_HOME") != "":
		return filepath.Join(getenv("XDG_STATE_HOME"), "fhirbulk"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("no state folder: set --state-dir, FHIRBULK_STATE_DIR or HOME")
	}
	return filepath.Join(home, ".local", "state", "fhirbulk"), nil
}

// Store is a folder of state files.
type Store struct{ Dir string }

func (s Store) path(id string) string { return filepath.Join(s.Dir, id+".json") }

// LogPath is where a detached import writes its messages.
func (s Store) LogPath(id string) string { return filepath.Join(s.Dir, id+".log") }

// Write saves st atomically (a temporary file renamed over the old one),
// readable by its owner only.
func (s Store) Write(st *State) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state folder %s: %w", s.Dir, unwrapPath(err))
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.Dir, "."+st.ID+".*.tmp") // 0600
	if err != nil {
		return fmt.Errorf("state folder %s: %w", s.Dir, unwrapPath(err))
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path(st.ID))
	}
	if err != nil {
		os.Remove(f.Name()) //nolint:errcheck
		return fmt.Errorf("state file %s: %w", s.path(st.ID), unwrapPath(err))
	}
	return nil
}

// ErrUnknown is returned for an import id without a state file.
var ErrUnknown = errors.New("no such import")

// Read loads an import's state, with its status as it really is: an import
// recorded in progress whose process is gone is interrupted, and its inputs
// that were in progress are pending again (their transactions rolled back).
func (s Store) Read(id string) (*State, error) {
	data, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %q in %s", ErrUnknown, id, s.Dir)
	}
	if err != nil {
		return nil, err
	}
	st := &State{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("state file %s: %v", s.path(id), err)
	}
	if st.Status == StatusInProgress && !s.Running(id) {
		st.Status = StatusInterrupted
		for i := range st.Inputs {
			if st.Inputs[i].Status == StatusInProgress {
				st.Inputs[i] = InputState{ResourceType: st.Inputs[i].ResourceType, URL: st.Inputs[i].URL, Status: StatusPending}
			}
		}
	}
	return st, nil
}

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
// It is a POSIX record lock, so the kernel drops it when the process dies,
// however it dies, and another process can test it without taking it.
type Lock struct{ f *os.File }

// ErrRunning is returned when another process runs the import.
var ErrRunning = errors.New("is running")

func wholeFile(typ int16) *syscall.Flock_t {
	return &syscall.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0}
}

// Lock takes the import's lock, or fails with ErrRunning.
func (s Store) Lock(id string) (*Lock, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state folder %s: %w", s.Dir, unwrapPath(err))
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, id+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, wholeFile(syscall.F_WRLCK)); err != nil {
		f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("import %q %w", id, ErrRunning)
		}
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close() //nolint:errcheck // closing drops the lock
		l.f = nil
	}
}

// Running reports whether another live process holds the import's lock.
func (s Store) Running(id string) bool {
	f, err := os.Open(filepath.Join(s.Dir, id+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	lk := wholeFile(syscall.F_WRLCK)
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, lk); err != nil {
		return false
	}
	return lk.Type != syscall.F_UNLCK
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
