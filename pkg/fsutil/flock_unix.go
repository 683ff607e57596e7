//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// lockTemp takes an exclusive flock on f, just created as name, and keeps it
// until the returned release is called: the mark of a live writer, which
// the kernel drops when the process dies, however it dies. The lock is held
// through a duplicate of f's descriptor so that closing f (before the rename,
// as Commit does) keeps it. ok is false when f is not name's file any more,
// or is locked by someone else: another run's RemoveStaleTemps took it for a
// dead writer's before we locked it. Where the filesystem has no flock the
// file stays unlocked, which only means no later run will remove it.
func lockTemp(f *os.File, name string) (release func(), ok bool) {
	release = func() {}
	rc, err := f.SyscallConn()
	if err != nil {
		return release, true
	}
	dup := -1
	var lockErr error
	ctlErr := rc.Control(func(fd uintptr) {
		// Under ForkLock, as package os does, so that no child started in
		// between inherits the descriptor (and the lock with it).
		syscall.ForkLock.RLock()
		d, err := syscall.Dup(int(fd))
		if err == nil {
			syscall.CloseOnExec(d)
			dup = d
		}
		syscall.ForkLock.RUnlock()
		if err == nil {
			lockErr = flock(dup)
		}
	})
	if ctlErr != nil || dup < 0 {
		return release, true
	}
	if lockErr != nil {
		syscall.Close(dup)
		return release, !errors.Is(lockErr, syscall.EWOULDBLOCK)
	}
	release = func() { syscall.Close(dup) } // closing releases the lock
	mine, err1 := f.Stat()
	there, err2 := os.Lstat(name)
	if err1 != nil || err2 != nil || !os.SameFile(mine, there) {
		release()
		return func() {}, false
	}
	return release, true
}

// flock takes an exclusive lock on fd without waiting.
func flock(fd int) error {
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			return err
		}
	}
}

// RemoveStaleTemps removes the temporary files that runs writing path
// left when they were killed: regular files named as CreateTemp names them
// for path whose lock can be taken (their writer is gone). Files of other
// names, and those whose writer still runs, are not touched. Temporary
// folders (MkdirTemp's, ".NAME.<12 hex>.tmp" holding a lock file) are
// removed whatever NAME: an export to a new folder every night
// ($(date +%F)) never writes the same name twice, and the folder a killed
// run left would stay for good. Errors are ignored: this is tidying, never
// a reason to fail.
func RemoveStaleTemps(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	entries, _ := d.ReadDir(-1)
	d.Close()
	for _, e := range entries {
		switch {
		case e.IsDir() && isTempFolder(e.Name()):
			// MkdirTemp's: its lock file inside marks a live writer.
			removeIfUnlocked(filepath.Join(dir, e.Name(), TempFolderLock), filepath.Join(dir, e.Name()))
		case !isTempOf(e.Name(), base):
		case e.Type().IsRegular():
			removeIfUnlocked(filepath.Join(dir, e.Name()), "")
		}
	}
}

// removeIfUnlocked removes the file name if it is a regular file whose lock
// it can take; with a folder given, it removes that folder (whose lock file
// name is) instead.
func removeIfUnlocked(name, folder string) {
	// O_NONBLOCK and O_NOFOLLOW: should the name have become a named pipe or
	// a link since the listing, opening it neither waits nor follows.
	flags := syscall.O_NONBLOCK | syscall.O_NOFOLLOW
	// Read-write where allowed: NFS emulates flock with fcntl locks, whose
	// exclusive kind needs a descriptor open for writing.
	f, err := os.OpenFile(name, os.O_RDWR|flags, 0)
	if err != nil {
		if f, err = os.OpenFile(name, os.O_RDONLY|flags, 0); err != nil {
			return
		}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	var lockErr error
	if rc.Control(func(fd uintptr) { lockErr = flock(int(fd)) }) != nil || lockErr != nil {
		return
	}
	// Still the file we locked? (Another run may have removed it meanwhile.)
	mine, err1 := f.Stat()
	there, err2 := os.Lstat(name)
	if err1 == nil && err2 == nil && os.SameFile(mine, there) {
		if folder != "" {
			os.RemoveAll(folder)
			return
		}
		os.Remove(name)
	}
}

// keepOwner gives f the owner and group of old where the process may (root
// may; others only a group they belong to); failures are ignored.
func keepOwner(f *os.File, old fs.FileInfo) {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	cur, err := f.Stat()
	if err != nil {
		return
	}
	if cst, ok := cur.Sys().(*syscall.Stat_t); ok && cst.Uid == st.Uid && cst.Gid == st.Gid {
		return
	}
	f.Chown(int(st.Uid), int(st.Gid)) // best effort, as documented
}
