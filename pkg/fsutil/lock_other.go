//go:build !unix && !windows

package fsutil

import (
	"errors"
	"os"
)

// noFollow: here no flag keeps an open from following a link; OpenNoFollow
// still refuses what is not a regular file once opened.
const noFollow = 0

// LockFile is not supported here.
func LockFile(path string) (*os.File, error) { return nil, errors.ErrUnsupported }

// LockHeld is always false here: no lock can be taken.
func LockHeld(path string) bool { return false }
