//go:build !unix

package fsutil

import "testing"

// lockHeldByOther: on Windows the lock is a handle without sharing, which
// this process sees too.
func lockHeldByOther(t *testing.T, path string) bool { return LockHeld(path) }
