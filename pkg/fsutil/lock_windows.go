//go:build windows

package fsutil

import (
	"errors"
	"os"
	"syscall"
)

// noFollow opens a symbolic link (a reparse point) itself rather than its
// target; OpenNoFollow then refuses it.
const noFollow = syscall.FILE_FLAG_OPEN_REPARSE_POINT

const errorSharingViolation = syscall.Errno(32) // ERROR_SHARING_VIOLATION

// The lock is the lock file opened with no sharing: Windows closes the
// handle when the process dies, and a second open fails while it lives.
func openExclusive(path string, create uint32, access uint32) (*os.File, error) {
	name, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	h, err := syscall.CreateFile(name, access, 0, nil, create,
		syscall.FILE_ATTRIBUTE_NORMAL|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return nil, err
	}
	return regularOnly(os.NewFile(uintptr(h), path), path)
}

// LockFile opens (creates) the lock file at path, never through a symbolic
// link, and locks it, or fails with ErrLocked while another process holds
// it. Closing the file releases the lock; so does the end of the process,
// however it ends.
func LockFile(path string) (*os.File, error) {
	f, err := openExclusive(path, syscall.OPEN_ALWAYS, syscall.GENERIC_READ|syscall.GENERIC_WRITE)
	if errors.Is(err, errorSharingViolation) {
		return nil, ErrLocked
	}
	return f, err
}

// LockHeld reports whether a live process holds the lock of the lock file
// at path (false when there is no such file).
func LockHeld(path string) bool {
	f, err := openExclusive(path, syscall.OPEN_EXISTING, syscall.GENERIC_READ)
	if err != nil {
		return errors.Is(err, errorSharingViolation)
	}
	f.Close()
	return false
}
