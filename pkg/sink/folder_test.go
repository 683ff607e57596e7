package sink

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFolderAppearsWhole(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "export")
	f, err := OpenFolder(path, false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Create("a.ndjson", false)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("{}\n")) //nolint:errcheck
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the folder is there before Commit: %v", err)
	}
	if err := f.Commit(); err != nil {
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

	// An existing folder: refused without force; with it, replaced whole.
	if _, err := OpenFolder(path, false); !errors.Is(err, ErrExists) {
		t.Fatalf("existing folder: %v", err)
	}
	g, err := OpenFolder(path, true)
	if err != nil {
		t.Fatal(err)
	}
	s, _ = g.Create("b.ndjson", true)
	s.Write([]byte("{}\n")) //nolint:errcheck
	s.Commit()              //nolint:errcheck
	if err := g.Commit(); err != nil {
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
	h, _ := OpenFolder(filepath.Join(parent, "gone"), false)
	h.Create("c.ndjson", false) //nolint:errcheck
	h.Abort()
	others, _ = os.ReadDir(parent)
	if len(others) != 1 {
		t.Fatalf("left after Abort: %v", others)
	}
	os.WriteFile(filepath.Join(parent, "file"), nil, 0o644) //nolint:errcheck
	if _, err := OpenFolder(filepath.Join(parent, "file"), true); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("a file at the path: %v", err)
	}
}

// A killed run's temporary folder (its lock file unlocked) is removed by the
// next run for the same path; a live one is not.
func TestFolderStaleRemoved(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "export")
	live, err := OpenFolder(path, false)
	if err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(parent, ".export.0123456789ab.tmp")
	os.Mkdir(dead, 0o755)                                           //nolint:errcheck
	os.WriteFile(filepath.Join(dead, folderLock), nil, 0o600)       //nolint:errcheck
	os.WriteFile(filepath.Join(dead, "Patient.ndjson"), nil, 0o644) //nolint:errcheck
	other, err := OpenFolder(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Abort()
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead run's folder is still there: %v", err)
	}
	if _, err := os.Stat(live.tmp); err != nil {
		t.Errorf("the live run's folder was removed: %v", err)
	}
	live.Abort()
}
