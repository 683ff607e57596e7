package sink

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFolderAppearsWhole(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "export")
	f, err := OpenFolder(path, FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Create("a.ndjson", false)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("{}\n"))
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the folder is there before Commit: %v", err)
	}
	if err := f.Commit(nil); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(path)
	if len(entries) != 1 || entries[0].Name() != "a.ndjson" {
		t.Fatalf("entries %v (no lock file may be left)", entries)
	}
	others, _ := os.ReadDir(parent)
	if len(others) != 1 {
		t.Fatalf("left beside it: %v", others)
	}

	// An existing folder: refused without force; with it, replaced whole,
	// but only an earlier export (a manifest.json) or an empty folder.
	if _, err := OpenFolder(path, FolderOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("existing folder: %v", err)
	}
	if _, err := OpenFolder(path, FolderOptions{Force: true}); !errors.Is(err, ErrNotExport) {
		t.Fatalf("a folder without a manifest: %v", err)
	}
	os.Mkdir(filepath.Join(parent, "empty"), 0o755)
	if e, err := OpenFolder(filepath.Join(parent, "empty"), FolderOptions{Force: true}); err != nil {
		t.Fatalf("an empty folder: %v", err)
	} else {
		e.Abort()
	}
	os.Remove(filepath.Join(parent, "empty"))
	os.WriteFile(filepath.Join(path, Manifest), []byte("{}"), 0o644)
	g, err := OpenFolder(path, FolderOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s, _ = g.Create("b.ndjson", true)
	s.Write([]byte("{}\n"))
	s.Commit()
	if err := g.Commit(nil); err != nil {
		t.Fatal(err)
	}
	entries, _ = os.ReadDir(path)
	if len(entries) != 1 || entries[0].Name() != "b.ndjson" {
		t.Fatalf("after --force: %v", entries)
	}
	others, _ = os.ReadDir(parent)
	if len(others) != 1 {
		t.Fatalf("left beside it after --force: %v", others)
	}

	// Abort leaves nothing; a file path is not a folder.
	h, _ := OpenFolder(filepath.Join(parent, "gone"), FolderOptions{})
	h.Create("c.ndjson", false)
	h.Abort()
	others, _ = os.ReadDir(parent)
	if len(others) != 1 {
		t.Fatalf("left after Abort: %v", others)
	}
	os.WriteFile(filepath.Join(parent, "file"), nil, 0o644)
	if _, err := OpenFolder(filepath.Join(parent, "file"), FolderOptions{Force: true}); !errors.Is(err, ErrNotFolder) || err.Error() != "output "+filepath.Join(parent, "file")+" is a file, not a folder: it is never replaced" {
		t.Fatalf("a file at the path: %v", err)
	}
	os.Symlink(path, filepath.Join(parent, "link"))
	if _, err := OpenFolder(filepath.Join(parent, "link"), FolderOptions{Force: true}); !errors.Is(err, ErrNotFolder) || !strings.Contains(err.Error(), "link is a symbolic link, not a folder") {
		t.Fatalf("a link at the path: %v", err)
	}
}

// A killed run's temporary folder (its lock file unlocked) is removed by the
// next run for the same path; a live one is not.
func TestFolderStaleRemoved(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "export")
	live, err := openLocalFolder(path, false)
	if err != nil {
		t.Fatal(err)
	}
	// A killed run's folder, of this name and of last night's (a folder
	// per night never comes back to a name); and what is not ours.
	var dead []string
	for _, name := range []string{".export.0123456789ab.tmp", ".2026-11-30.0123456789ab.tmp"} {
		d := filepath.Join(parent, name)
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, folderLock), nil, 0o600)
		os.WriteFile(filepath.Join(d, "Patient.ndjson"), nil, 0o644)
		dead = append(dead, d)
	}
	var kept []string
	for _, name := range []string{".other.0123456789ab.tmp", ".x.0123456789xy.tmp", ".x.012345.tmp", "x.0123456789ab.tmp"} {
		d := filepath.Join(parent, name)
		os.Mkdir(d, 0o755)
		if name == ".other.0123456789ab.tmp" {
			continue // no lock file: not a Folder's (or one being renamed)
		}
		os.WriteFile(filepath.Join(d, folderLock), nil, 0o600)
		kept = append(kept, d)
	}
	kept = append(kept, filepath.Join(parent, ".other.0123456789ab.tmp"))
	other, err := OpenFolder(filepath.Join(parent, "2026-12-01"), FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Abort()
	for _, d := range dead {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dead run's folder %s is still there: %v", d, err)
		}
	}
	for _, d := range kept {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	if _, err := os.Stat(live.tmp); err != nil {
		t.Errorf("the live run's folder was removed: %v", err)
	}
	live.Abort()
}
