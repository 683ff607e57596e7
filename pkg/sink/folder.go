package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Folder is a folder of named outputs that is published whole, or not at
// all: Create makes each data file (a Destination of its own: written,
// then committed or aborted); Commit writes the manifest, last, and
// publishes the folder; Abort removes whatever was written. Exactly one of
// Commit or Abort ends a Folder (Abort after Commit does nothing). Files of
// one folder may be written from several goroutines, each file from one
// at a time.
//
// A folder in object storage (issue 18) is the same contract: data
// objects first, the manifest last (its presence is what tells a reader
// the export is complete), and Abort deleting the objects written.
type Folder interface {
	// Path is the folder's final path (or URL), as given.
	Path() string
	// Create makes the data file name (not Manifest) in the folder,
	// gzip-compressed when asked.
	Create(name string, gzip bool) (Destination, error)
	// Commit writes manifest as the folder's Manifest file (none when
	// nil), after every data file, and publishes the folder. On an error
	// nothing of the folder is left.
	Commit(manifest []byte) error
	// Abort removes the folder being written and everything in it.
	Abort()
}

var _ Folder = (*localFolder)(nil)

// localFolder is a local folder that appears whole or not at all, as a
// file of Open does: its files are written into a temporary folder beside
// the final path (fsutil.MkdirTemp: ".NAME.<12 hex>.tmp", holding a lock
// file while it is being written, so that a later run removes the folders
// of killed runs), and Commit syncs them and renames the folder into
// place. A reader (a cron job, a loader polling for exports) never sees
// half an export.
type localFolder struct {
	path   string
	tmp    string
	force  bool
	unlock func()
	lock   string // the lock file, removed just before the rename

	mu   sync.Mutex
	done bool
}

// folderLock is the name of a temporary folder's lock file.
const folderLock = fsutil.TempFolderLock

// ErrNotFolder is returned (wrapped) when a folder's path is something
// else (a file, a symbolic link, ...): it is never replaced.
var ErrNotFolder = errors.New("not a folder")

// ErrNotExport is returned (wrapped) by a forced OpenFolder whose path is a
// folder that is neither empty nor holds a manifest.json: force replaces
// an earlier export, not a home folder given by mistake. The message says
// only that (cmd adds which flag replaces what).
var ErrNotExport = errors.New("not an earlier export (no manifest.json), and not empty")

// Manifest is the file whose presence makes a folder an export that force
// may replace.
const Manifest = bulkdata.ManifestName

// OpenFolder prepares a new folder at path, chosen by its form as Open
// chooses: a bucket URL is a prefix (bucketfolder.go), a file:// URL its
// path, any other URL ("scheme://…") is refused with ErrNotSupported;
// anything else is a local folder. An existing path is refused unless
// o.Force, and then it must be a folder that is empty or holds a Manifest
// (it is replaced by Commit, only once the new one is complete). The
// parent folder must exist.
func OpenFolder(path string, o FolderOptions) (Folder, error) {
	if source.URLScheme(path) != "" {
		switch {
		case bucket.Is(path):
			f, err := openBucketFolder(path, o)
			if err != nil {
				return nil, err
			}
			return f, nil
		case source.URLScheme(path) == "file":
			p, err := source.FilePath(path)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", source.Redact(path), err)
			}
			path = p
		default:
			return nil, notSupported(path)
		}
	}
	f, err := openLocalFolder(path, o.Force)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func openLocalFolder(path string, force bool) (*localFolder, error) {
	path = filepath.Clean(path)
	if old, err := os.Lstat(path); err == nil {
		if err := replaceable(path, old, force); err != nil {
			return nil, err
		}
	}
	fsutil.RemoveStaleTemps(path)
	tmp, unlock, err := fsutil.MkdirTemp(path)
	if err != nil {
		return nil, fsutil.FileError("output", path, err)
	}
	return &localFolder{path: path, tmp: tmp, force: force, unlock: unlock, lock: filepath.Join(tmp, folderLock)}, nil
}

// Path is the folder's final path.
func (f *localFolder) Path() string { return f.path }

// Create makes the file name in the folder (gzip-compressed when asked):
// write it, then Commit it (flushed and synced) or Abort it (removed).
// Files of one folder may be written from several goroutines, each file
// from one at a time.
func (f *localFolder) Create(name string, gzip bool) (Destination, error) {
	if name == Manifest {
		return nil, fmt.Errorf("output %s: bad file name %q (the manifest is written by Commit)", f.path, name)
	}
	return f.create(name, gzip)
}

func (f *localFolder) create(name string, gzip bool) (*Sink, error) {
	if name == "" || name == folderLock || filepath.Base(name) != name {
		return nil, fmt.Errorf("output %s: bad file name %q", f.path, name)
	}
	file, err := os.OpenFile(filepath.Join(f.tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return nil, fsutil.FileError("output", filepath.Join(f.path, name), err)
	}
	s := &Sink{file: file, tmp: file.Name(), path: filepath.Join(f.path, name), inPlace: true, opts: Options{Gzip: gzip}}
	if err := s.layer(file); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

// Commit makes the folder appear at its path, whole: the manifest written
// last, every file synced, the folder renamed into place (without Force,
// never over a path that appeared meanwhile; with it, the old folder is
// swapped out and removed). Files not committed by then are left in it as
// they are.
func (f *localFolder) Commit(manifest []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return errors.New("folder already closed")
	}
	f.done = true
	if manifest != nil {
		if err := f.writeManifest(manifest); err != nil {
			os.RemoveAll(f.tmp)
			f.unlock()
			return err
		}
	}
	fsutil.SyncDir(f.tmp)
	// The lock file goes now (its lock is still held, on the open file):
	// a cleaner finds no lock file, and leaves a folder alone without one.
	os.Remove(f.lock) // a stray .lock in the export is harmless
	err := publishFolder(f.tmp, f.path, f.force)
	f.unlock()
	if err != nil {
		os.RemoveAll(f.tmp)
		return err
	}
	fsutil.SyncDir(filepath.Dir(f.path))
	return nil
}

// writeManifest writes data as the folder's Manifest file, synced.
func (f *localFolder) writeManifest(data []byte) error {
	m, err := f.create(Manifest, false)
	if err != nil {
		return err
	}
	if _, err := m.Write(data); err != nil {
		m.Abort()
		return err
	}
	return m.Commit()
}

// Abort removes the temporary folder and everything in it.
func (f *localFolder) Abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	f.done = true
	os.RemoveAll(f.tmp) // best effort: nothing more to do
	f.unlock()
}

// publishFolder renames tmp to path: not over an existing path unless
// force, and then the old folder is swapped out and removed.
func publishFolder(tmp, path string, force bool) error {
	old, err := os.Lstat(path)
	if err != nil {
		err := fsutil.RenameNoReplace(tmp, path)
		switch {
		case errors.Is(err, fs.ErrExist):
			return &ExistsError{Path: path}
		case err != nil:
			return fsutil.FileError("output", path, err)
		}
		return nil
	}
	if err := replaceable(path, old, force); err != nil {
		return err
	}
	if err := fsutil.Exchange(tmp, path); err != nil {
		return fsutil.FileError("output", path, err)
	}
	// tmp now holds the old folder.
	os.RemoveAll(tmp) // the new folder is in place; the old one is garbage
	return nil
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
		return &ExistsError{Path: path}
	}
	if m, err := os.Lstat(filepath.Join(path, Manifest)); err == nil && m.Mode().IsRegular() {
		return nil
	}
	d, err := os.Open(path)
	if err != nil {
		return fsutil.FileError("output", path, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("output %s is %w", path, ErrNotExport)
	}
	return nil
}
