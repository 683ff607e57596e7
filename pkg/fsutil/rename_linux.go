//go:build linux

package fsutil

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// RenameNoReplace renames from to to, failing with an error that wraps
// fs.ErrExist when to exists: one atomic step (renameat2 RENAME_NOREPLACE).
func RenameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return renameChecked(from, to) // a filesystem without RENAME_NOREPLACE
	}
	return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
}

// Exchange swaps from and to in one atomic step (renameat2
// RENAME_EXCHANGE): a reader sees the old folder or the new one, never
// none.
func Exchange(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return swapAside(from, to)
	}
	return err
}
