//go:build unix

package source

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mkfifo makes a FIFO in a temporary folder.
func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

// A FIFO that no writer opens waits in open(2), which a signal Go handles
// does not end: a load of it ignored Ctrl-C. Check does not open it, and
// Open gives up when the context ends.
func TestFIFOWithoutWriter(t *testing.T) {
	path := mkfifo(t)
	t.Cleanup(func() {
		// Lets the open given up end (a reader waits, so this does not).
		if w, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	checked := make(chan error, 1)
	go func() { checked <- Check(path, Options{}) }()
	select {
	case err := <-checked:
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Check waits for a writer of the FIFO")
	}
	ctx, cancel := context.WithCancel(context.Background())
	opened := make(chan error, 1)
	go func() {
		r, err := Open(ctx, path, Options{})
		if r != nil {
			r.Close()
		}
		opened <- err
	}()
	cancel()
	select {
	case err := <-opened:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Open = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open still waits for a writer of the FIFO after its context ended")
	}
}

// A FIFO with a writer is read as any file, and Check does not open it: a
// writer waiting would go on, and write to a reader about to close.
func TestFIFOWithWriter(t *testing.T) {
	path := mkfifo(t)
	wrote := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0) // waits for a reader
		if err == nil {
			_, err = io.WriteString(w, "{\"id\":\"1\"}\n")
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		wrote <- err
	}()
	var got []byte
	var err error
	within(t, "Check and Open of a FIFO with a writer", func() {
		if err = Check(path, Options{}); err != nil {
			return
		}
		var r *Reader
		if r, err = Open(context.Background(), path, Options{}); err != nil {
			return
		}
		got, err = io.ReadAll(r)
		r.Close()
	})
	if err != nil || string(got) != "{\"id\":\"1\"}\n" {
		t.Errorf("read %q, %v", got, err)
	}
	if err := <-wrote; err != nil {
		t.Errorf("writer: %v", err)
	}
}

// within runs f, failing the test if it has not returned in 30 seconds
// (a generous bound for what takes a millisecond).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still waiting after 30s", what)
	}
}

// A FIFO whose writer sends nothing: Open, which reads its first bytes, or
// a Read after it, ends with the context (Linux: there a FIFO is polled,
// and closing it ends the Read).
func TestFIFOSilentWriter(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a Read of a FIFO ends on Close where the file is polled: Linux")
	}
	path := mkfifo(t)
	// O_RDWR does not wait, and keeps a writer on the FIFO that sends nothing.
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	read := make(chan error, 1)
	go func() {
		r, err := Open(ctx, path, Options{})
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		read <- err
	}()
	cancel()
	select {
	case err := <-read:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Open and Read = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a silent FIFO is still read after the context ended")
	}
}
