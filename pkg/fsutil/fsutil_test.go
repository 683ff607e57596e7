package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestIsTempOf(t *testing.T) {
	for name, want := range map[string]bool{
		".out.ndjson.0123456789ab.tmp":     true,
		".out.ndjson.0123456789AB.tmp":     false, // CreateTemp writes lowercase hex
		".out.ndjson.0123456789a.tmp":      false,
		".out.ndjson.0123456789abc.tmp":    false,
		".out.ndjson.0123456789ag.tmp":     false,
		".out.ndjson.gz.0123456789ab.tmp":  false, // out.ndjson.gz's
		".out.ndjson.0123456789ab.tmp.bak": false,
		"out.ndjson.0123456789ab.tmp":      false,
		"..out.ndjson.0123456789ab.tmp":    false,
		".out.ndjson.0123456789ab":         false,
	} {
		if got := isTempOf(name, "out.ndjson"); got != want {
			t.Errorf("isTempOf(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestIsTempFolder(t *testing.T) {
	for name, want := range map[string]bool{
		".export.0123456789ab.tmp":     true,
		".2026-11-30.0123456789ab.tmp": true,
		"..0123456789ab.tmp":           false, // no name
		".x.0123456789xy.tmp":          false,
		".x.012345.tmp":                false,
		"x.0123456789ab.tmp":           false,
	} {
		if got := isTempFolder(name); got != want {
			t.Errorf("isTempFolder(%q) = %v, want %v", name, got, want)
		}
	}
}

// WriteFile replaces the file whole, leaves no temporary file beside it,
// gives the new file its mode, and replaces a symbolic link rather than
// writing through it.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "two" {
		t.Errorf("content %q", got)
	}
	if fi, err := os.Stat(path); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the file", len(entries))
	}
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if err := WriteFile(link, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("written through the link: target holds %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the link was not replaced by a file: %v %v", fi.Mode(), err)
	}
}

// A failed WriteFile (no such folder) leaves nothing behind and says why
// about the path asked for.
func TestWriteFileMissingFolder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "missing", "state.json")
	err := WriteFile(path, []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WriteFile into a missing folder: %v", err)
	}
	if got := FileError("state file", path, err).Error(); got != "state file "+path+": "+errNotExistText() {
		t.Errorf("FileError: %q", got)
	}
}

func errNotExistText() string {
	_, err := os.Open(filepath.Join(os.TempDir(), "fsutil-no-such-file-here"))
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// OpenNoFollow opens a regular file, and refuses a symbolic link (to a
// file or to nothing) and a folder, each with its own sentinel.
func TestOpenNoFollow(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	f, err := OpenNoFollow(file, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("a regular file: %v", err)
	}
	f.Close()
	if _, err := OpenNoFollow(dir, os.O_RDONLY, 0); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a folder: %v, want ErrNotRegular", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "nowhere"), dangling)
	for _, p := range []string{link, dangling} {
		for _, flag := range []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE} {
			if f, err := OpenNoFollow(p, flag, 0o600); !errors.Is(err, ErrSymlink) {
				if f != nil {
					f.Close()
				}
				t.Errorf("%s (flag %#x): %v, want ErrSymlink", p, flag, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dangling link's target was created: %v", err)
	}
}

// LockFile takes the lock once: a second LockFile fails with ErrLocked
// while the first holds it, LockHeld sees it, and closing releases it.
func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	if LockHeld(path) {
		t.Fatal("LockHeld of a missing file")
	}
	f, err := LockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		// POSIX record locks are per process: another process must test
		// it. The child is this test binary, run for helperLockHeld.
		if !lockHeldByOther(t, path) {
			t.Error("another process does not see the lock held")
		}
	}
	f.Close()
	if LockHeld(path) {
		t.Error("LockHeld after the lock was released")
	}
	g, err := LockFile(path)
	if err != nil {
		t.Fatalf("LockFile after release: %v", err)
	}
	g.Close()
}

// A lock file that is a symbolic link is not followed.
func TestLockFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "x.lock")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if f, err := LockFile(link); !errors.Is(err, ErrSymlink) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("LockFile through a link: %v, want ErrSymlink", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}
}

// RenameNoReplace never replaces: an existing target fails with
// fs.ErrExist and both stay as they were.
func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
	os.WriteFile(from, []byte("new"), 0o600)
	os.WriteFile(to, []byte("old"), 0o600)
	if err := RenameNoReplace(from, to); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(to); string(got) != "old" {
		t.Errorf("target replaced: %q", got)
	}
	os.Remove(to)
	if err := RenameNoReplace(from, to); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(to); string(got) != "new" {
		t.Errorf("renamed content %q", got)
	}
}
