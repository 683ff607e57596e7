package sink

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Folder is a folder of files that appears whole or not at all, as a file
// of Open does: its files are written into a temporary folder beside the
// final path (".NAME.<12 hex>.tmp", holding a lock file while it is being
// written, so that a later run removes the folders of killed runs), and
// Commit syncs them and renames the folder into place. A reader (a cron
// job, a loader polling for exports) never sees half an export.
type Folder struct {
	path   string
	tmp    string
	force  bool
	unlock func()
	lock   string // the lock file, removed just before the rename

	mu   sync.Mutex
	done bool
}

// folderLock is the name of a temporary folder's lock file.
const folderLock = ".lock"

// ErrNotFolder is returned (wrapped) when a folder's path is something
// else (a file, a symbolic link, ...): it is never replaced.
var ErrNotFolder = errors.New("not a folder")

// ErrNotExport is returned (wrapped) by a forced Folder whose path is a
// folder that is neither empty nor holds a manifest.json: force replaces
// an earlier export, not a home folder given by mistake.
var ErrNotExport = errors.New("not an earlier export (no manifest.json), and not empty")

// Manifest is the file whose presence makes a folder an export that force
// may replace.
const Manifest = "manifest.json"

// OpenFolder prepares a new folder at path. An existing path is refused
// unless force, and then it must be a folder that is empty or holds a
// Manifest (it is replaced by Commit, only once the new one is complete).
// The parent folder must exist.
func OpenFolder(path string, force bool) (*Folder, error) {
	path = filepath.Clean(path)
	if old, err := os.Lstat(path); err == nil {
		if err := replaceable(path, old, force); err != nil {
			return nil, err
		}
	}
	removeStaleTemps(path)
	dir, base := filepath.Split(path)
	for range 10 {
		tmp := filepath.Join(dir, "."+base+"."+randomHex()+".tmp")
		err := os.Mkdir(tmp, 0o777)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, FileError("output", path, err)
		}
		lock := filepath.Join(tmp, folderLock)
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			os.RemoveAll(tmp) //nolint:errcheck
			return nil, FileError("output", path, err)
		}
		unlock, ok := lockTemp(f, lock)
		f.Close() //nolint:errcheck // the lock is held on a duplicate
		if !ok {
			os.RemoveAll(tmp) //nolint:errcheck
			continue
		}
		return &Folder{path: path, tmp: tmp, force: force, unlock: unlock, lock: lock}, nil
	}
	return nil, fmt.Errorf("output %s: cannot create a temporary folder beside it", path)
}

// Path is the folder's final path.
func (f *Folder) Path() string { return f.path }

// Create makes the file name in the folder (gzip-compressed when asked):
// write it, then Commit it (flushed and synced) or Abort it (removed).
// Files of one folder may be written from several goroutines, each file
// from one at a time.
func (f *Folder) Create(name string, gzip bool) (*Sink, error) {
	if name == "" || name == folderLock || filepath.Base(name) != name {
		return nil, fmt.Errorf("output %s: bad file name %q", f.path, name)
	}
	file, err := os.OpenFile(filepath.Join(f.tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return nil, FileError("output", filepath.Join(f.path, name), err)
	}
	s := &Sink{file: file, tmp: file.Name(), path: filepath.Join(f.path, name), inPlace: true, opts: Options{Gzip: gzip}}
	if err := s.layer(file); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

// Commit makes the folder appear at its path, whole: every file synced,
// the folder renamed into place (without Force, never over a path that
// appeared meanwhile; with it, the old folder is swapped out and removed).
// Files not committed by then are left in it as they are.
func (f *Folder) Commit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return errors.New("folder already closed")
	}
	f.done = true
	syncDir(f.tmp)
	// The lock file goes now (its lock is still held, on the open file):
	// a cleaner finds no lock file, and leaves a folder alone without one.
	os.Remove(f.lock) //nolint:errcheck // a stray .lock in the export is harmless
	err := publishFolder(f.tmp, f.path, f.force)
	f.unlock()
	if err != nil {
		os.RemoveAll(f.tmp) //nolint:errcheck
		return err
	}
	syncDir(filepath.Dir(f.path))
	return nil
}

// Abort removes the temporary folder and everything in it.
func (f *Folder) Abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	f.done = true
	os.RemoveAll(f.tmp) //nolint:errcheck // best effort: nothing more to do
	f.unlock()
}

// publishFolder renames tmp to path: not over an existing path unless
// force, and then the old folder is swapped out and removed.
func publishFolder(tmp, path string, force bool) error {
	old, err := os.Lstat(path)
	if err != nil {
		return renameNoReplace(tmp, path)
	}
	if err := replaceable(path, old, force); err != nil {
		return err
	}
	if err := exchange(tmp, path); err != nil {
		return FileError("output", path, err)
	}
	// tmp now holds the old folder.
	os.RemoveAll(tmp) //nolint:errcheck // the new folder is in place; the old one is garbage
	return nil
}

func randomHex() string {
	r := make([]byte, tempSuffixLen/2)
	rand.Read(r) //nolint:errcheck // crypto/rand does not fail
	return hex.EncodeToString(r)
}

// renameChecked renames from to to unless to exists (a check, then a
// rename: for where no atomic no-clobber rename exists).
func renameChecked(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("output %s %w (use --force to replace it)", to, ErrExists)
	}
	if err := os.Rename(from, to); err != nil {
		return FileError("output", to, err)
	}
	return nil
}

// swapAside puts from at to and the old to at from, in three renames.
func swapAside(from, to string) error {
	aside := from + ".old"
	if err := os.Rename(to, aside); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		os.Rename(aside, to) //nolint:errcheck // put the old one back
		return err
	}
	return os.Rename(aside, from)
}

// replaceable says why the existing path (old is its Lstat) may not be
// replaced by a folder, or nil.
func replaceable(path string, old fs.FileInfo, force bool) error {
	if !old.IsDir() {
		kind := "a file"
		switch mode := old.Mode(); {
		case mode&fs.ModeSymlink != 0:
			kind = "a symbolic link"
		case !mode.IsRegular():
			kind = "a special file"
		}
		return fmt.Errorf("output %s is %s, %w: it is never replaced", path, kind, ErrNotFolder)
	}
	if !force {
		return fmt.Errorf("output %s %w (use --force to replace it)", path, ErrExists)
	}
	if m, err := os.Lstat(filepath.Join(path, Manifest)); err == nil && m.Mode().IsRegular() {
		return nil
	}
	d, err := os.Open(path)
	if err != nil {
		return FileError("output", path, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("output %s is %w: --force replaces only those", path, ErrNotExport)
	}
	return nil
}
