//go:build unix

package fsutil

import (
	"errors"
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

// LockFile opens (creates, mode 0600) the lock file at path as
// OpenNoFollow does and locks it, or fails with ErrLocked while another
// process holds it. Closing the file releases the lock; so does the end
// of the process, however it ends.
func LockFile(path string) (*os.File, error) {
	f, err := OpenNoFollow(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, wholeFile(syscall.F_WRLCK)); err != nil {
		f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, ErrLocked
		}
		return nil, err
	}
	return f, nil
}

// LockHeld reports whether a live process holds the lock of the lock file
// at path (false when there is no such file).
func LockHeld(path string) bool {
	f, err := OpenNoFollow(path, os.O_RDONLY, 0)
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
