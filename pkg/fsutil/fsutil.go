// Package fsutil holds the file helpers the packages that write files share
// (the model is litestream's internal/internal.go): temporary names beside
// a final path and the removal of those killed runs left, the two kinds of
// lock (a writer's flock on its temporary file; a lock file another process
// can test), opens that never follow a symbolic link, an atomic WriteFile,
// renames that do not clobber, and FileError, which names the user's path
// rather than a temporary one.
//
// Errors carry facts (the path, a sentinel to test with errors.Is), never
// advice: the command line adds that.
package fsutil

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotRegular is returned (wrapped) for a path that is something other
// than a regular file where only one will do.
var ErrNotRegular = errors.New("not a regular file")

// ErrSymlink is returned (wrapped) by OpenNoFollow for a symbolic link.
var ErrSymlink = errors.New("a symbolic link: not followed")

// ErrLocked is returned by LockFile when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// FileError is err about the file at path, said as "<what> <path>:
// <reason>": the *PathError wrapper, whose path may be a temporary name,
// is dropped, so that the user's path is the one named.
func FileError(what, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}

// WriteFile replaces the file at path with data, atomically: a reader sees
// the old content or the new, never a part (a temporary file beside it,
// synced, renamed over it, and the folder synced). A symbolic link at path
// is replaced, not followed. The new file has mode perm. Errors may name
// the temporary file: say them with FileError.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, tmp, unlock, err := CreateTemp(path, perm)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp) // best effort: the error says what failed
		return err
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// SyncDir makes a rename in dir durable; failures are ignored (not every
// filesystem supports fsync on a directory).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// tempSuffixLen is the length of the random part of a temporary name: 6
// bytes in hex.
const tempSuffixLen = 12

// randomHex is a new random part of a temporary name.
func randomHex() string {
	r := make([]byte, tempSuffixLen/2)
	rand.Read(r) // crypto/rand does not fail
	return hex.EncodeToString(r)
}

// tempName is a new temporary name beside path: ".NAME.<12 hex>.tmp".
func tempName(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+"."+randomHex()+".tmp")
}

// CreateTemp makes a new file beside path with a hidden random name
// (".NAME.<12 hex>.tmp") and mode perm (less the umask), and locks it (see
// RemoveStaleTemps): unlock releases the lock, once the file is renamed or
// removed.
func CreateTemp(path string, perm os.FileMode) (f *os.File, tmp string, unlock func(), err error) {
	for range 10 {
		tmp := tempName(path)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", nil, err
		}
		unlock, ok := lockTemp(f, tmp)
		if !ok {
			// Another run's cleanup took the new file for a dead writer's
			// before we could lock it, and removes it: take another name.
			f.Close()
			continue
		}
		return f, tmp, unlock, nil
	}
	return nil, "", nil, errors.New("cannot create a temporary file beside it")
}

// TempFolderLock is the name of the lock file inside a temporary folder of
// MkdirTemp.
const TempFolderLock = ".lock"

// MkdirTemp makes a new folder beside path with a hidden random name
// (".NAME.<12 hex>.tmp") holding a locked lock file (TempFolderLock), so
// that RemoveStaleTemps removes it once its writer is gone. Before the
// folder is renamed into place, remove the lock file (the lock stays held
// until unlock); a folder without one is never removed as stale. Errors
// may name the temporary folder: say them with FileError.
func MkdirTemp(path string) (tmp string, unlock func(), err error) {
	for range 10 {
		tmp := tempName(path)
		err := os.Mkdir(tmp, 0o777)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		lock := filepath.Join(tmp, TempFolderLock)
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			os.RemoveAll(tmp)
			return "", nil, err
		}
		unlock, ok := lockTemp(f, lock)
		f.Close() // the lock is held on a duplicate
		if !ok {
			os.RemoveAll(tmp)
			continue
		}
		return tmp, unlock, nil
	}
	return "", nil, errors.New("cannot create a temporary folder beside it")
}

// isTempOf reports whether name is a temporary file name CreateTemp makes
// for a final path whose last element is base.
func isTempOf(name, base string) bool {
	rest, ok := strings.CutPrefix(name, "."+base+".")
	if !ok {
		return false
	}
	hexPart, ok := strings.CutSuffix(rest, ".tmp")
	if !ok || len(hexPart) != tempSuffixLen {
		return false
	}
	for _, c := range []byte(hexPart) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isTempFolder reports whether name is named as a temporary folder of
// MkdirTemp for some final name: ".NAME.<12 hex>.tmp".
func isTempFolder(name string) bool {
	rest, ok := strings.CutSuffix(name, ".tmp")
	if !ok || len(rest) < 2+tempSuffixLen+1 || rest[0] != '.' || rest[len(rest)-tempSuffixLen-1] != '.' {
		return false
	}
	return isTempOf(name, rest[1:len(rest)-tempSuffixLen-1])
}

// KeepModeAndOwner gives the new file f the permission bits of the file
// old (its Lstat) it will replace, and its owner and group where allowed.
func KeepModeAndOwner(f *os.File, old fs.FileInfo) error {
	keepOwner(f, old) // first: chown may clear mode bits
	return f.Chmod(old.Mode().Perm())
}

// errExists is the error of a rename that would replace to.
func errExists(from, to string) error {
	return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
}

// renameChecked renames from to to unless to exists (a check, then a
// rename: for where no atomic no-clobber rename exists).
func renameChecked(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return errExists(from, to)
	}
	return os.Rename(from, to)
}

// swapAside puts from at to and the old to at from, in three renames.
func swapAside(from, to string) error {
	aside := from + ".old"
	if err := os.Rename(to, aside); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		os.Rename(aside, to) // put the old one back
		return err
	}
	return os.Rename(aside, from)
}

// OpenNoFollow opens the file at path only if it is a regular file, and
// never through a symbolic link: one there fails with an error that wraps
// ErrSymlink, anything else not a regular file with one that wraps
// ErrNotRegular (a FIFO among them: the open does not wait for its
// writer). Other errors are os's.
func OpenNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|noFollow, perm)
	if err != nil {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, &fs.PathError{Op: "open", Path: path, Err: ErrSymlink}
		}
		return nil, err
	}
	return regularOnly(f, path)
}

// regularOnly returns f, opened at path, if it is a regular file (a link
// opened itself, as Windows does, is not); else it closes f and says why.
func regularOnly(f *os.File, path string) (*os.File, error) {
	fi, err := f.Stat()
	switch {
	case err != nil:
	case fi.Mode()&fs.ModeSymlink != 0: // Windows opens the link itself
		err = &fs.PathError{Op: "open", Path: path, Err: ErrSymlink}
	case !fi.Mode().IsRegular():
		err = &fs.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
