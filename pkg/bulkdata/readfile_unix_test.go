//go:build unix

package bulkdata

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A FIFO blocks in open(2) until a writer comes, and in read(2) while the
// writer is silent: Ctrl-C (the context) must end both waits.
func TestReadFileFIFOCancelled(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	wait := func(name string, ctx context.Context) {
		t.Helper()
		start := time.Now()
		_, err := ReadFile(ctx, fifo)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: %v, want the context's error", name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%s: returned after %s", name, took)
		}
	}

	// No writer: open(2) blocks.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	wait("no writer", ctx)
	// Release the abandoned open, so that it does not outlive the test:
	// the reader it waits for is there, so a non-blocking open succeeds.
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}

	// A writer that says nothing: read(2) blocks.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0) // O_RDWR: opens without a reader
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	wait("a silent writer", ctx)
}
