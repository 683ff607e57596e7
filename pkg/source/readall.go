package source

import (
	"context"
	"fmt"
	"io"
)

// TooLargeError is a source ReadAll refused for its size. It does not
// name the source: the *Error around it does.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("larger than %s", sizeText(e.Limit))
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ReadAll opens spec as Open does (a file, "-", an http(s) URL, a
// bucket's object, gzip told by content) and reads it whole, at most
// limit bytes of its content: more is an *Error wrapping a
// *TooLargeError, found before more than limit+1 bytes are held. For what
// is read whole, small by nature (a query, a manifest): a /dev/zero or a
// data file given by mistake is refused, not read into memory without
// end. Errors are Open's and Read's, each an *Error naming the source
// (redacted), or the end of ctx.
func ReadAll(ctx context.Context, spec string, opts Options, limit int64) ([]byte, error) {
	r, err := Open(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, &Error{Source: r.Name(), Err: err}
	case int64(len(data)) > limit:
		return nil, &Error{Source: r.Name(), Err: &TooLargeError{Limit: limit}}
	}
	return data, nil
}
