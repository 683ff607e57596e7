//go:build unix

package fsutil

import (
	"errors"
	"syscall"
)

// ProcessAlive reports whether a process pid runs on this machine (one of
// another user's counts: signal 0 is refused with EPERM, not ESRCH).
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
