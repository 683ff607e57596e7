//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package fsutil

import (
	"io/fs"
	"os"
)

// Without flock a live writer's temporary file cannot be told from a dead
// one's: none is locked, and none is removed by a later run.

func lockTemp(f *os.File, name string) (release func(), ok bool) { return func() {}, true }

// RemoveStaleTemps does nothing here: see the comment above.
func RemoveStaleTemps(path string) {}

func keepOwner(f *os.File, old fs.FileInfo) {}
