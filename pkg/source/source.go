// Package source opens what load reads: a file, stdin ("-") or an http(s)
// URL, gzip or plain (told by its magic bytes, not its name). HTTP sources
// are retried on 429, 5xx and network errors with backoff (Retry-After is
// honoured) and resumed with a Range request when the connection drops
// mid-body; where the server cannot resume, the read fails with ErrRestart
// so the caller can start that source over cleanly.
//
// A URL's query string (the signature of a pre-signed URL) and its password
// never appear in a name or an error: see Redact.
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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"
)

// ErrRestart means an HTTP body broke off and the server cannot resume it:
// whatever was read of this source must be discarded and the source opened
// again.
var ErrRestart = errors.New("connection dropped and the server cannot resume")

// Options tune how sources are opened.
type Options struct {
	Stdin    io.Reader
	Client   *http.Client  // default: http.DefaultClient with no overall timeout
	Tries    int           // attempts per HTTP request (default 5)
	Backoff  time.Duration // first retry delay, doubled each time (default 500ms)
	MaxDelay time.Duration // cap for one delay, Retry-After included (default 30s)
}

func (o *Options) defaults() {
	if o.Client == nil {
		o.Client = http.DefaultClient
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
	name   string
	size   int64 // bytes of the raw (possibly compressed) stream, -1 if unknown
	raw    *countingReader
	r      io.Reader
	closer io.Closer
	gz     io.Closer
}

// Name is the source as it may be shown: a path, "stdin" or a redacted URL.
func (r *Reader) Name() string { return r.name }

// Size is the length of the raw stream when known, else -1.
func (r *Reader) Size() int64 { return r.size }

// BytesRead is how much of the raw stream has been read so far.
func (r *Reader) BytesRead() int64 { return r.raw.n.Load() }

// Read reads decompressed content.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.gz != nil && !errors.Is(err, ErrRestart) && !isContextErr(err) {
		err = fmt.Errorf("gzip: %w (truncated or corrupt)", err)
	}
	return n, err
}

// Close releases the source.
func (r *Reader) Close() error {
	if r.gz != nil {
		r.gz.Close() //nolint:errcheck // the raw stream's Close is what matters
	}
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// IsURL reports whether spec names an http(s) source.
func IsURL(spec string) bool {
	return strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://")
}

// Redact returns a URL (of any scheme) fit to show: no user info, and a
// query string replaced by "?…". Anything that is not a URL comes back
// unchanged.
func Redact(spec string) string {
	if !strings.Contains(spec, "://") {
		return spec
	}
	u, err := url.Parse(spec)
	if err != nil {
		// Unparseable: cut at the first '?' and drop anything before an '@'.
		s := spec
		if i := strings.IndexByte(s, '?'); i >= 0 {
			s = s[:i] + "?…"
		}
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			if i := strings.Index(s, "://"); i >= 0 && at > i {
				s = s[:i+3] + s[at+1:]
			}
		}
		return s
	}
	out := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		out += "?…"
	}
	return out
}

// Open opens spec: "-" for stdin, an http(s) URL, or a file path.
func Open(ctx context.Context, spec string, opts Options) (*Reader, error) {
	opts.defaults()
	var (
		raw    io.Reader
		closer io.Closer
		size   int64 = -1
		name         = spec
	)
	switch {
	case spec == "-":
		name = "stdin"
		if opts.Stdin == nil {
			return nil, errors.New("stdin: not available")
		}
		raw = opts.Stdin
	case IsURL(spec):
		name = Redact(spec)
		h, err := openHTTP(ctx, spec, name, opts)
		if err != nil {
			return nil, err
		}
		raw, closer, size = h, h, h.size
	default:
		f, err := os.Open(spec)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		if st, err := f.Stat(); err == nil {
			if st.IsDir() {
				f.Close()
				return nil, fmt.Errorf("%s: is a folder", spec)
			}
			if st.Mode().IsRegular() {
				size = st.Size()
			}
		}
		raw, closer = f, f
	}
	cr := &countingReader{r: raw}
	br := bufio.NewReaderSize(cr, 1<<20)
	r := &Reader{name: name, size: size, raw: cr, r: br, closer: closer}
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		r.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := newGzipReader(br)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: gzip: %w (truncated or corrupt)", name, err)
		}
		r.r, r.gz = zr, zr
	}
	return r, nil
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

// httpBody is an HTTP response body that survives dropped connections by
// asking for the rest with a Range request.
type httpBody struct {
	ctx       context.Context
	opts      Options
	url, name string
	body      io.ReadCloser
	off       int64 // bytes delivered to the reader
	size      int64 // full length, -1 if unknown
	validator string
	rangeOK   bool
	resumes   int
}

func openHTTP(ctx context.Context, spec, name string, opts Options) (*httpBody, error) {
	h := &httpBody{ctx: ctx, opts: opts, url: spec, name: name, size: -1}
	resp, err := h.get(0)
	if err != nil {
		return nil, err
	}
	h.body = resp.Body
	h.size = resp.ContentLength
	h.rangeOK = resp.Header.Get("Accept-Ranges") == "bytes"
	// If-Range needs a strong validator: a resumed body must be the same object.
	if etag := resp.Header.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		h.validator = etag
	} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
		h.validator = lm
	}
	return h, nil
}

// get requests the body from offset off (0: all of it), retrying what is
// worth retrying.
func (h *httpBody) get(off int64) (*http.Response, error) {
	delay := h.opts.Backoff
	var last error
	for try := 1; try <= h.opts.Tries; try++ {
		req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, h.url, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: bad URL", h.name)
		}
		if off > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
			if h.validator != "" {
				req.Header.Set("If-Range", h.validator)
			}
		}
		resp, err := h.opts.Client.Do(req)
		wait := delay
		switch {
		case err != nil:
			if h.ctx.Err() != nil {
				return nil, h.ctx.Err()
			}
			last = fmt.Errorf("%s: %s", h.name, netMessage(err))
		case resp.StatusCode == http.StatusOK && off == 0, resp.StatusCode == http.StatusPartialContent && off > 0:
			return resp, nil
		case resp.StatusCode == http.StatusOK && off > 0:
			// The server ignored the Range (or the object changed).
			resp.Body.Close()
			return nil, ErrRestart
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			last = fmt.Errorf("%s: HTTP %s", h.name, resp.Status)
			if ra, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
				wait = ra
			}
			drain(resp)
		default:
			drain(resp)
			return nil, fmt.Errorf("%s: HTTP %s", h.name, resp.Status)
		}
		if try == h.opts.Tries {
			break
		}
		wait = min(wait, h.opts.MaxDelay)
		select {
		case <-time.After(wait):
		case <-h.ctx.Done():
			return nil, h.ctx.Err()
		}
		delay *= 2
	}
	return nil, fmt.Errorf("%s (gave up after %d tries)", last, h.opts.Tries)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck
	resp.Body.Close()
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// netMessage is a network error without the URL that net/http puts in it
// (with its query string).
func netMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func (h *httpBody) Read(p []byte) (int, error) {
	for {
		n, err := h.body.Read(p)
		h.off += int64(n)
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (h.size < 0 || h.off >= h.size) {
			return n, io.EOF
		}
		if h.ctx.Err() != nil {
			return n, h.ctx.Err()
		}
		if n > 0 {
			// Deliver what arrived; the next Read meets the error again.
			return n, nil
		}
		h.body.Close()
		if !h.rangeOK || h.size < 0 {
			return 0, fmt.Errorf("%s: %w (%s)", h.name, ErrRestart, netMessage(err))
		}
		if h.resumes++; h.resumes > h.opts.Tries {
			return 0, fmt.Errorf("%s: connection dropped %d times: %s", h.name, h.resumes, netMessage(err))
		}
		resp, gerr := h.get(h.off)
		if gerr != nil {
			if errors.Is(gerr, ErrRestart) {
				return 0, fmt.Errorf("%s: %w", h.name, ErrRestart)
			}
			return 0, gerr
		}
		if !contentRangeStartsAt(resp.Header.Get("Content-Range"), h.off) {
			resp.Body.Close()
			return 0, fmt.Errorf("%s: %w (bad Content-Range on resume)", h.name, ErrRestart)
		}
		h.body = resp.Body
	}
}

func contentRangeStartsAt(v string, off int64) bool {
	// "bytes 100-199/200"
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return false
	}
	start, _, ok := strings.Cut(rest, "-")
	return ok && start == strconv.FormatInt(off, 10)
}

func (h *httpBody) Close() error {
	if h.body != nil {
		return h.body.Close()
	}
	return nil
}
