package sink

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
	s.Write([]byte("line\n"))
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
	s.Write(bytes.Repeat([]byte("x"), 3<<20))
	s.Abort()
	if got := listDir(t, dir); got != "" {
		t.Errorf("folder holds %q after Abort", got)
	}
}

func TestNoOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	os.WriteFile(path, []byte("old"), 0o644)
	if _, err := Open(Options{Path: path}); !errors.Is(err, ErrExists) {
		t.Fatalf("Open over an existing file: %v, want ErrExists", err)
	}
	// A file that appears while the export runs is not replaced either.
	other := filepath.Join(dir, "late.ndjson")
	s, err := Open(Options{Path: other})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, []byte("late"), 0o644)
	s.Write([]byte("new"))
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
	s.Write([]byte("new"))
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
		s.Write(want)
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
	s.Write(want)
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

// blockingWriter is a destination whose second write (pgzip's first
// compressed block, after its header) blocks until release is closed. It
// counts the writes that begin once aborted is set.
type blockingWriter struct {
	calls    atomic.Int32
	entered  chan struct{}
	release  chan struct{}
	aborted  *atomic.Bool
	late     atomic.Int32
	received atomic.Int64
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.aborted.Load() {
		w.late.Add(1)
	}
	if w.calls.Add(1) == 2 {
		close(w.entered)
		<-w.release
	}
	w.received.Add(int64(len(p)))
	return len(p), nil
}

// Abort returns only once pgzip's goroutines have stopped, and none of them
// writes to the destination after it (issue #10: they went on writing, a
// data race on the destination and a write to a closed file).
func TestAbortStopsGzip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var aborted atomic.Bool
		dest := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{}), aborted: &aborted}
		s, err := openLocal(Options{Stdout: dest, Gzip: true})
		if err != nil {
			t.Fatal(err)
		}
		s.Write(bytes.Repeat([]byte("resource line\n"), 3<<20/14)) // three pgzip blocks
		<-dest.entered                                             // pgzip's writer is inside the destination's Write
		abortDone := make(chan struct{})
		go func() {
			s.Abort()
			aborted.Store(true)
			close(abortDone)
		}()
		synctest.Wait() // every other goroutine of the test is blocked or gone
		select {
		case <-abortDone:
			t.Error("Abort returned while pgzip was still writing to the destination")
		default:
		}
		close(dest.release)
		<-abortDone
		synctest.Wait()
		if n := dest.late.Load(); n > 0 {
			t.Errorf("%d writes reached the destination after Abort returned", n)
		}
		if s.gz != nil {
			// An Abort that left pgzip running leaves its goroutine waiting
			// for ever, which synctest reports as a deadlock: end it so the
			// failure reads as the errors above.
			s.gz.Close()
		}
	})
}

// Two runs writing the same path at once: the second's Open leaves the
// first's temporary file alone, and both end cleanly.
func TestLiveTempSurvivesAnotherOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	first, err := openLocal(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Abort()
	first.Write([]byte("first\n"))
	second, err := Open(Options{Path: path, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Abort()
	if _, err := os.Stat(first.tmp); err != nil {
		t.Fatalf("the first writer's temporary file is gone after a second Open: %v", err)
	}
	if err := first.Commit(); err != nil {
		t.Fatalf("the first writer's Commit: %v", err)
	}
	second.Write([]byte("second\n"))
	if err := second.Commit(); err != nil {
		t.Fatalf("the second writer's Commit: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "second\n" {
		t.Errorf("content %q", got)
	}
	if got := listDir(t, dir); got != "out.ndjson" {
		t.Errorf("folder holds %q", got)
	}
}
