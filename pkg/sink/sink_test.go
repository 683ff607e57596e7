package sink

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func TestFileAppearsOnlyOnCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("line\n")) //nolint:errcheck
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the final path exists before Commit: %v", err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "line\n" {
		t.Errorf("content %q", got)
	}
	if got := listDir(t, dir); got != "out.ndjson" {
		t.Errorf("folder holds %q, want only out.ndjson", got)
	}
	s.Abort() // after Commit: a no-op
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Abort after Commit removed the file: %v", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Path: filepath.Join(dir, "out.ndjson.gz")})
	if err != nil {
		t.Fatal(err)
	}
	s.Write(bytes.Repeat([]byte("x"), 3<<20)) //nolint:errcheck
	s.Abort()
	if got := listDir(t, dir); got != "" {
		t.Errorf("folder holds %q after Abort", got)
	}
}

func TestNoOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	os.WriteFile(path, []byte("old"), 0o644) //nolint:errcheck
	if _, err := Open(Options{Path: path}); !errors.Is(err, ErrExists) {
		t.Fatalf("Open over an existing file: %v, want ErrExists", err)
	}
	// A file that appears while the export runs is not replaced either.
	other := filepath.Join(dir, "late.ndjson")
	s, err := Open(Options{Path: other})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, []byte("late"), 0o644) //nolint:errcheck
	s.Write([]byte("new"))                     //nolint:errcheck
	if err := s.Commit(); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit over a file that appeared: %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(other); string(got) != "late" {
		t.Errorf("the late file was changed: %q", got)
	}
	if got := listDir(t, dir); got != "late.ndjson out.ndjson" {
		t.Errorf("folder holds %q", got)
	}
	// --force replaces.
	s, err = Open(Options{Path: path, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("new")) //nolint:errcheck
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Errorf("content %q after --force", got)
	}
}

func TestGzip(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("resource line\n"), 300000) // several pgzip blocks
	for _, opts := range []Options{{Path: filepath.Join(dir, "a.ndjson.gz")}, {Path: filepath.Join(dir, "b"), Gzip: true}} {
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Write(want) //nolint:errcheck
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(opts.Path)
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes back, %v", opts.Path, len(got), err)
		}
	}
	// On stdout an aborted gzip stream has no footer: gunzip must see it truncated.
	var out bytes.Buffer
	s, _ := Open(Options{Stdout: &out, Gzip: true})
	s.Write(want) //nolint:errcheck
	s.Abort()
	if zr, err := gzip.NewReader(bytes.NewReader(out.Bytes())); err == nil {
		if _, err := io.ReadAll(zr); err == nil {
			t.Error("an aborted gzip stream on stdout reads as complete")
		}
	}
}

func TestMissingFolder(t *testing.T) {
	_, err := Open(Options{Path: filepath.Join(t.TempDir(), "no", "out.ndjson")})
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") || strings.Contains(err.Error(), ".tmp") {
		t.Errorf("Open in a missing folder: %v", err)
	}
}
