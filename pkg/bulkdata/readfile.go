package bulkdata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// MaxFileSize bounds what ReadFile and ReadAll read: a manifest is a
// list of files, a few MiB for the biggest exports; anything larger is not
// a manifest (/dev/zero, a data file given by mistake) and would otherwise
// be read into memory without end.
const MaxFileSize = 64 << 20

// TooLargeError is a file ReadFile or ReadAll refused for its size. It
// does not name the file: the caller's message does.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("larger than %d MiB: not a manifest", e.Limit>>20)
}

// ReadFile reads the file at path whole, up to MaxFileSize (larger: a
// *TooLargeError), and returns as soon as ctx is done, whatever the file
// is. A FIFO without a writer blocks in open(2), and one whose writer is
// silent blocks in read(2), neither of which a context reaches: both are
// done in a goroutine that is abandoned when ctx ends (it closes what it
// opened once open returns). Errors are those of os (a *fs.PathError
// naming path) or ctx.Err().
func ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		mu        sync.Mutex
		f         *os.File
		abandoned bool
	)
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		opened, err := os.Open(path)
		if err != nil {
			done <- result{err: err}
			return
		}
		mu.Lock()
		if abandoned {
			mu.Unlock()
			opened.Close()
			return
		}
		f = opened
		mu.Unlock()
		data, err := readBounded(opened)
		opened.Close()
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		if f != nil {
			// Ends a read of a FIFO or a terminal (the runtime polls
			// those); a regular file's read ends on its own.
			f.Close()
		}
		mu.Unlock()
		return nil, ctx.Err()
	}
}

// ReadAll reads r whole (stdin), up to MaxFileSize, returning as soon as
// ctx is done; a read that blocks then is abandoned, still running.
func ReadAll(ctx context.Context, r io.Reader) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := readBounded(r)
		done <- result{data, err}
	}()
	select {
	case res := <-done:
		return res.data, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readBounded reads r whole, refusing more than MaxFileSize.
func readBounded(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			err = context.Canceled // closed by ReadFile on ctx.Done: nobody reads this
		}
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &TooLargeError{Limit: MaxFileSize}
	}
	return data, nil
}
