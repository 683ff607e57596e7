// Package source opens what load reads: a file, stdin ("-"), an http(s)
// URL or an s3:// object (s3.go), gzip or plain (told by its magic bytes, not its name). What a spec
// names is told in one place, locate, and a URL's scheme chooses its
// opener in one function, schemeOpener (the place for s3, gs, azblob);
// Open, Check and IsURL all go through them. HTTP sources
// are retried on 429, 5xx, network errors and silence (see
// Options.IdleTimeout) with backoff (Retry-After is honoured) and resumed
// with a Range request when the connection drops mid-body, but only where
// the server gave a validator (a strong ETag or Last-Modified) for If-Range
// to prove the rest belongs to the same version of the file; s3:// objects
// likewise, with If-Match on their ETag. Where it cannot
// resume, the read fails with ErrRestart so the caller can start that
// source over cleanly.
//
// A URL's query string (the signature of a pre-signed URL), its fragment
// and its password never appear in a name or an error: see Redact and
// RedactText. No Referer is sent on a redirect, since it would carry the
// signature to the next host.
package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"
)

// ErrRestart means an HTTP body broke off and the server cannot resume it:
// whatever was read of this source must be discarded and the source opened
// again.
var ErrRestart = errors.New("connection dropped and the server cannot resume")

// Options tune how sources are opened. The zero value is ready to use.
type Options struct {
	// Stdin is what "-" reads (nil: "-" is an error).
	Stdin io.Reader
	// Client makes the HTTP requests (default: a client of this package's
	// own over http.DefaultTransport, with no overall timeout). Whichever
	// client is used, a redirect never carries a Referer; a CheckRedirect
	// of its own still runs after that, and without one Go's limit of 10
	// redirects holds.
	Client *http.Client
	// IdleTimeout bounds each wait for the server (default 60s; negative:
	// no bound): for the response headers, and for more of a body while a
	// Read waits for it. A request silent that long is abandoned like a
	// dropped connection: asked again (from where it stopped, where the
	// server can resume; from the start, if nothing was read yet), or
	// ended with ErrRestart; past Tries the error says so, as in
	// "no data for 1m (gave up after 5 tries)". Time during which nobody
	// reads does not count.
	IdleTimeout time.Duration
	// Tries bounds the attempts of one HTTP request, and how often one body
	// may break off (default 5).
	Tries    int
	Backoff  time.Duration // first retry delay, doubled each time (default 500ms)
	MaxDelay time.Duration // cap for one delay, Retry-After included (default 30s)
}

func (o *Options) defaults() {
	var c http.Client
	if o.Client != nil {
		c = *o.Client
	}
	c.CheckRedirect = withoutReferer(c.CheckRedirect)
	o.Client = &c
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.Tries <= 0 {
		o.Tries = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 30 * time.Second
	}
}

// Reader is an open source: Read gives the decompressed content.
type Reader struct {
	ctx    context.Context // Open's: once it ends, a read error is its error
	name   string
	size   int64 // bytes of the raw (possibly compressed) stream, -1 if unknown
	raw    *countingReader
	r      io.Reader
	closer io.Closer
	gz     io.Closer
	buf    *bufio.Reader // from bufPool, back to it on Close
	// reading is held by Read, so that Close can wait for a Read of gz
	// (the gzip reader is not safe for a Close during a Read) and for the
	// buffer to be free again.
	reading sync.Mutex
	closed  bool
}

// bufPool holds the 1 MiB read buffers of closed sources, for the next:
// a load of many small files would otherwise allocate one per file.
var bufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1<<20) }}

var errClosed = errors.New("source closed")

// Name is the source as it may be shown: a path, "stdin" or a redacted URL.
func (r *Reader) Name() string { return r.name }

// Size is the length of the raw stream when known, else -1.
func (r *Reader) Size() int64 { return r.size }

// BytesRead is how much of the raw stream has been read so far.
func (r *Reader) BytesRead() int64 { return r.raw.n.Load() }

// Read reads decompressed content. Its errors do not name the source (Name
// does); an HTTP body that broke off for good gives one that wraps
// ErrRestart, or the caller's context error.
func (r *Reader) Read(p []byte) (int, error) {
	r.reading.Lock()
	defer r.reading.Unlock()
	if r.closed {
		return 0, errClosed
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.ctx.Err() != nil {
		return n, r.ctx.Err() // the file it closed, say: not a broken file
	}
	if err != nil && err != io.EOF && r.gz != nil && !notTheBytes(err) {
		err = fmt.Errorf("gzip: %w (truncated or corrupt)", err)
	}
	return n, err
}

// Close releases the source. It may be called while a Read is under way in
// another goroutine (gzip reads ahead in one); a Read that waits for an HTTP
// server then returns at once.
func (r *Reader) Close() error {
	var err error
	// The raw stream first: that ends a wait for the network, and with it a
	// Read under way, which gzip's Close must not overlap.
	if r.closer != nil {
		err = r.closer.Close()
	}
	r.reading.Lock()
	defer r.reading.Unlock()
	if r.closed {
		return err
	}
	r.closed = true
	if r.gz != nil {
		r.gz.Close() // the raw stream's Close is what matters
	}
	// gzip's read-ahead has stopped (its Close waits for it): nothing reads
	// the buffer any more.
	r.buf.Reset(nil)
	bufPool.Put(r.buf)
	return err
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// notTheBytes reports whether a read error is about getting the stream, not
// about what it holds (so gzip is not to blame).
func notTheBytes(err error) bool {
	var fe *fetchError
	return errors.Is(err, ErrRestart) || isContextErr(err) || errors.As(err, &fe)
}

// Error is a source that cannot be opened: its name as it may be shown
// (redacted), and why.
type Error struct {
	Source string
	Err    error
}

func (e *Error) Error() string { return e.Source + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// location is what a spec names, as Open and Check tell it (locate): stdin,
// a URL of a scheme some opener reads, a local file, or a spec refused
// before anything is opened.
type location struct {
	stdin  bool
	url    string  // the URL, trimmed, when opener is set
	opener *opener // nil: stdin, a file, or refused
	path   string  // the local file: spec, or a file:// URL's path
	err    error   // refused, and why (an *Error)
}

// opener reads the URLs of one scheme.
type opener struct {
	// check tells, without a request, whether the URL could be opened.
	check func(url string) error
	// open starts reading the URL: the raw stream and its size (-1 if
	// unknown). Its errors are wrapped in an *Error naming the source
	// (unless they are the context's).
	open func(ctx context.Context, url string, opts Options) (io.ReadCloser, int64, error)
}

// schemeOpener is the one place a URL scheme is chosen: http(s), and the
// object stores s3, gs and azblob (object.go); file:// is a local path
// (locate). Any other "scheme://" is refused as not supported.
func schemeOpener(scheme string) (*opener, bool) {
	switch scheme {
	case "http", "https":
		return &httpOpener, true
	case "s3", "gs", "azblob":
		return &objectOpener, true
	}
	return nil, false
}

var httpOpener = opener{
	check: func(raw string) error {
		if u, err := url.Parse(raw); err != nil || u.Host == "" {
			scheme, _, _ := cutScheme(raw)
			return fmt.Errorf("not a URL: want %s://HOST/PATH", scheme)
		}
		return nil
	},
	open: func(ctx context.Context, url string, opts Options) (io.ReadCloser, int64, error) {
		h, err := openHTTP(ctx, url, opts)
		if err != nil {
			return nil, -1, err
		}
		return h, h.size, nil
	},
}

// errNotSupported is the reason for a URL of a scheme no opener reads.
var errNotSupported = errors.New("not supported yet: use a pre-signed https URL")

// locate tells what spec names: "-" is stdin; "scheme://…" a URL, read by
// schemeOpener's opener or refused; "http:x" (an http(s) scheme without
// "//") and "//user@host…" (a URL that lost its scheme) are refused;
// anything else is a local file path.
func locate(spec string) location {
	if spec == "-" {
		return location{stdin: true}
	}
	trimmed := strings.TrimSpace(spec)
	scheme, rest, hasScheme := cutScheme(trimmed)
	switch {
	case hasScheme && scheme == "file" && strings.HasPrefix(rest, "//"):
		p, err := FilePath(trimmed)
		if err != nil {
			return location{err: &Error{Source: Redact(trimmed), Err: err}}
		}
		return location{path: p}
	case hasScheme && strings.HasPrefix(rest, "//"):
		if o, ok := schemeOpener(scheme); ok {
			return location{url: trimmed, opener: o}
		}
		return location{err: &Error{Source: Redact(trimmed), Err: errNotSupported}}
	case hasScheme && isHTTPScheme(scheme):
		return location{err: &Error{Source: Redact(trimmed), Err: fmt.Errorf("not a URL: want %s://HOST/PATH", scheme)}}
	case !hasScheme && strings.HasPrefix(trimmed, "//") && strings.ContainsAny(trimmed, "@?"):
		// Not a path anyone means: a URL that lost its scheme.
		return location{err: &Error{Source: Redact(trimmed), Err: errors.New("not a URL: no scheme (want https://HOST/PATH)")}}
	}
	return location{path: spec}
}

// FilePath is the local path a file:// URL names: file:///PATH or
// file://localhost/PATH, percent-escapes decoded. A file URL is a path
// wherever a path is taken (sources and outputs).
func FilePath(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil || !strings.EqualFold(u.Scheme, "file"):
		return "", errors.New("not a URL: want file:///PATH")
	case u.Host != "" && !strings.EqualFold(u.Host, "localhost"):
		return "", errors.New("a file URL on another host: want file:///PATH")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", errors.New("a file URL takes no user, query string or #: want file:///PATH")
	case u.Path == "" || u.Path == "/":
		return "", errors.New("no path: want file:///PATH")
	}
	return u.Path, nil
}

// Check tells, without reading it, whether Open could open spec: "-"
// needs Stdin, a URL must be of a scheme Open reads and pass its opener's
// check (for http(s): it parses with a host; no request is made), a file
// must exist, be readable and not be a folder. A load of several sources
// checks them all before it commits the first.
func Check(spec string, opts Options) error {
	loc := locate(spec)
	switch {
	case loc.err != nil:
		return loc.err
	case loc.stdin:
		if opts.Stdin == nil {
			return &Error{Source: "stdin", Err: errors.New("not available")}
		}
		return nil
	case loc.opener != nil:
		if err := loc.opener.check(loc.url); err != nil {
			return &Error{Source: Redact(loc.url), Err: err}
		}
		return nil
	}
	st, err := os.Stat(loc.path)
	switch {
	case err != nil:
		return fileError(spec, err)
	case st.IsDir():
		return &Error{Source: Redact(spec), Err: errors.New("is a folder")}
	case !st.Mode().IsRegular():
		// A FIFO, a device: not opened (see checkReadable).
		if err := checkReadable(loc.path); err != nil {
			return &Error{Source: Redact(spec), Err: err}
		}
		return nil
	}
	// Opened, not read: a load of 20,000 small files checks them all.
	f, err := os.Open(loc.path)
	if err != nil {
		return fileError(spec, err)
	}
	return f.Close()
}

// fileError is the *Error of a file that cannot be opened: the bare cause
// ("no such file or directory"), as the name is said once.
func fileError(spec string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &Error{Source: Redact(spec), Err: err}
}

// Open opens spec as locate tells it: "-" for stdin, a URL of a scheme
// schemeOpener reads (http(s), s3, gs, azblob; file:// is a path; any
// other scheme is an error), or a file path. Errors name the source redacted.
func Open(ctx context.Context, spec string, opts Options) (*Reader, error) {
	opts.defaults()
	var (
		raw    io.Reader
		closer io.Closer
		size   int64 = -1
		name         = spec
	)
	loc := locate(spec)
	switch {
	case loc.err != nil:
		return nil, loc.err
	case loc.stdin:
		name = "stdin"
		if opts.Stdin == nil {
			return nil, &Error{Source: "stdin", Err: errors.New("not available")}
		}
		raw = opts.Stdin
	case loc.opener != nil:
		name = Redact(loc.url)
		rc, n, err := loc.opener.open(ctx, loc.url, opts)
		if err != nil {
			if isContextErr(err) {
				return nil, err
			}
			return nil, &Error{Source: name, Err: err}
		}
		raw, closer, size = rc, rc, n
	default:
		f, err := OpenLocal(ctx, loc.path)
		if err != nil {
			if isContextErr(err) {
				return nil, err
			}
			return nil, fileError(spec, err)
		}
		raw, closer = f, f
		if f, ok := f.(*os.File); ok {
			if st, err := f.Stat(); err == nil {
				if st.IsDir() {
					f.Close()
					return nil, &Error{Source: Redact(spec), Err: errors.New("is a folder")}
				}
				size = st.Size()
			}
		}
	}
	cr := &countingReader{r: raw}
	br := bufPool.Get().(*bufio.Reader)
	br.Reset(cr)
	r := &Reader{ctx: ctx, name: name, size: size, raw: cr, r: br, buf: br, closer: closer}
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		r.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err() // a FIFO it closed, say
		}
		if isContextErr(err) {
			return nil, err
		}
		return nil, &Error{Source: name, Err: err}
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := newGzipReader(br)
		if err != nil {
			r.Close()
			switch {
			case isContextErr(err):
				return nil, err
			case notTheBytes(err):
				return nil, &Error{Source: name, Err: err}
			}
			return nil, &Error{Source: name, Err: fmt.Errorf("gzip: %w (truncated or corrupt)", err)}
		}
		r.r, r.gz = zr, zr
	}
	return r, nil
}

// openFile opens a file for reading. One that is not a regular file is
// opened in a goroutine, given up when ctx ends: opening a FIFO waits in
// open(2) until a writer opens it, and that wait does not end for a signal
// that Go handles (Ctrl-C). O_NONBLOCK would not do: a FIFO so opened reads
// as empty (EOF at once) while no writer has opened it. The goroutine given
// up closes the file should it ever open.
func openFile(ctx context.Context, path string) (*os.File, error) {
	if st, err := os.Stat(path); err != nil || st.Mode().IsRegular() || st.IsDir() {
		return os.Open(path)
	}
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		done <- opened{f, err}
	}()
	select {
	case o := <-done:
		return o.f, o.err
	case <-ctx.Done():
		go func() {
			if o := <-done; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// OpenLocal opens the local file at path for reading so that ctx's end
// reaches it whatever it is: a regular file (or a folder) is an *os.File;
// anything else (a FIFO, a device) is opened as openFile does and closed
// when ctx ends, which ends a Read that waits for its writer for ever
// (where the file is polled: Linux). Errors are os's, or ctx.Err().
func OpenLocal(ctx context.Context, path string) (io.ReadCloser, error) {
	f, err := openFile(ctx, path)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.Mode().IsRegular() || st.IsDir() {
		return f, nil
	}
	sf := &specialFile{File: f}
	sf.stop = context.AfterFunc(ctx, func() { f.Close() })
	return sf, nil
}

// specialFile is a file that is not a regular file, closed when Open's
// context ends (stop undoes that).
type specialFile struct {
	*os.File
	stop func() bool
}

// Close closes the file unless the context's end did.
func (f *specialFile) Close() error {
	if !f.stop() {
		return nil
	}
	return f.File.Close()
}

// newGzipReader decompresses with pgzip (read-ahead on another core) and
// reads concatenated gzip members as one stream, as gunzip does.
func newGzipReader(r io.Reader) (io.ReadCloser, error) {
	zr, err := pgzip.NewReaderN(r, 1<<20, 4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return zr, nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
