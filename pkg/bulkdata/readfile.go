package bulkdata

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gocloud.dev/blob"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
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

// ReadSpec reads a manifest whole, as ReadFile does, from a path, a
// file:///PATH URL or a bucket's object (s3://, gs://, azblob://BUCKET/KEY,
// read with the cloud's standard credentials). Errors do not name spec
// (the caller's message does): os's, a refused URL's reason, a store's
// failure in one line (bucket.Describe: bucket.IsNotFound tells a missing
// object), a *TooLargeError, or ctx.Err().
func ReadSpec(ctx context.Context, spec string) ([]byte, error) {
	switch {
	case bucket.Is(spec):
		loc, err := bucket.ParseObject(spec)
		if err != nil {
			return nil, err
		}
		b, err := bucket.Open(ctx, loc, bucket.Options{})
		if err != nil {
			return nil, bucket.Describe(err, bucket.OpRead, loc)
		}
		defer b.Close()
		return ReadObject(ctx, b, loc)
	case source.URLScheme(spec) == "file":
		path, err := source.FilePath(spec)
		if err != nil {
			return nil, err
		}
		return ReadFile(ctx, path)
	}
	return ReadFile(ctx, spec)
}

// ReadObject reads the object loc of the open bucket b whole, up to
// MaxFileSize (larger: a *TooLargeError), given up when ctx ends. Its
// failures are bucket.Describe's (for OpRead), or ctx.Err().
func ReadObject(ctx context.Context, b *blob.Bucket, loc bucket.Location) ([]byte, error) {
	r, err := b.NewReader(ctx, loc.Key, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, bucket.Describe(err, bucket.OpRead, loc)
	}
	defer r.Close()
	data, err := ReadAll(ctx, r)
	var tl *TooLargeError
	if err != nil && ctx.Err() == nil && !errors.As(err, &tl) {
		err = bucket.Describe(bucket.Cause(err), bucket.OpRead, loc)
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
