//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// RemoveStaleTemps removes a temporary file whose writer is gone (no lock
// on it) and a temporary folder whose lock file is not locked, and leaves
// those of a live writer (CreateTemp's, MkdirTemp's) alone; released, they
// go too.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	f, liveFile, unlockFile, err := CreateTemp(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // the lock is held on a duplicate
	liveDir, unlockDir, err := MkdirTemp(filepath.Join(dir, "export"))
	if err != nil {
		t.Fatal(err)
	}
	deadFile := filepath.Join(dir, ".out.ndjson.0123456789ab.tmp")
	os.WriteFile(deadFile, nil, 0o600)
	deadDir := filepath.Join(dir, ".export.0123456789ab.tmp")
	os.Mkdir(deadDir, 0o700)
	os.WriteFile(filepath.Join(deadDir, TempFolderLock), nil, 0o600)
	RemoveStaleTemps(path)
	for _, p := range []string{deadFile, deadDir} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s (no writer) is still there: %v", p, err)
		}
	}
	for _, p := range []string{liveFile, liveDir} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s (a live writer's) was removed: %v", p, err)
		}
	}
	unlockFile()
	unlockDir()
	RemoveStaleTemps(path)
	for _, p := range []string{liveFile, liveDir} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there once released: %v", p, err)
		}
	}
}
