package bulkdata

import (
	"context"
	"fmt"
	"io"

	"github.com/fhirbulk/fhirbulk/pkg/source"
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
// is: it is opened as source.OpenLocal opens it (a FIFO without a writer
// waits in open(2), one whose writer is silent in read(2), and the end of
// ctx ends both). Errors are those of os (a *fs.PathError naming path) or
// ctx.Err().
func ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := source.OpenLocal(ctx, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readBounded(f)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err() // the file closed by ctx's end, not broken
	}
	return data, err
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
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &TooLargeError{Limit: MaxFileSize}
	}
	return data, nil
}
