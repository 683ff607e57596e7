//go:build windows

package bulkimport

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/fhirbulk/fhirbulk/pkg/sink"
)

// noFollow opens a symbolic link (a reparse point) itself rather than its
// target; openState then refuses it.
const noFollow = syscall.FILE_FLAG_OPEN_REPARSE_POINT

const (
	errorSharingViolation = syscall.Errno(32) // ERROR_SHARING_VIOLATION
	detachedProcess       = 0x00000008        // DETACHED_PROCESS
)

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
	f := os.NewFile(uintptr(h), path)
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("state file %s is not a regular file (a symbolic link is not followed)", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// lockFile opens (creates) the lock file at path and locks it, or fails
// with ErrRunning.
func lockFile(path string) (*os.File, error) {
	f, err := openExclusive(path, syscall.OPEN_ALWAYS, syscall.GENERIC_READ|syscall.GENERIC_WRITE)
	if errors.Is(err, errorSharingViolation) {
		return nil, ErrRunning
	}
	if err != nil {
		return nil, sink.FileError("state file", path, err)
	}
	return f, nil
}

// lockHeld reports whether a process holds the lock of the lock file at path.
func lockHeld(path string) bool {
	f, err := openExclusive(path, syscall.OPEN_EXISTING, syscall.GENERIC_READ)
	if err != nil {
		return errors.Is(err, errorSharingViolation)
	}
	f.Close()
	return false
}

// DetachedProcAttr is how `import --detach` starts its child: without a
// console, in a process group of its own.
func DetachedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP | detachedProcess}
}
