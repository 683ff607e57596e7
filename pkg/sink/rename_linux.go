//go:build linux

package sink

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames from to to, failing with ErrExists when to
// exists: one atomic step (renameat2 RENAME_NOREPLACE).
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("output %s %w (use --force to replace it)", to, ErrExists)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return renameChecked(from, to) // a filesystem without RENAME_NOREPLACE
	}
	return FileError("output", to, &os.LinkError{Op: "rename", Old: from, New: to, Err: err})
}

// exchange swaps from and to in one atomic step (renameat2
// RENAME_EXCHANGE): a reader sees the old folder or the new one, never
// none.
func exchange(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return swapAside(from, to)
	}
	return err
}
