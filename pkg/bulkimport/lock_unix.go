//go:build unix

package bulkimport

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// noFollow makes an open fail on a symbolic link; O_NONBLOCK keeps it from
// waiting on a FIFO (it changes nothing for a regular file).
const noFollow = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// The lock is a POSIX record lock on the whole file: the kernel drops it
// when the process dies, and F_GETLK tests it without taking it.
func wholeFile(typ int16) *syscall.Flock_t {
	return &syscall.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0}
}

// lockFile opens (creates) the lock file at path and locks it, or fails
// with ErrRunning.
func lockFile(path string) (*os.File, error) {
	f, err := openState(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, wholeFile(syscall.F_WRLCK)); err != nil {
		f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return f, nil
}

// lockHeld reports whether a process holds the lock of the lock file at path.
func lockHeld(path string) bool {
	f, err := openState(path, os.O_RDONLY, 0)
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

// DetachedProcAttr is how `import --detach` starts its child: in a session
// of its own, so that it has no controlling terminal and outlives a closed
// one.
func DetachedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
