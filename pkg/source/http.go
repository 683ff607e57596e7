package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// withoutReferer wraps a client's CheckRedirect: Go's client sets Referer to
// the URL it was redirected from, query string (a pre-signed URL's
// signature) included, and that goes to whatever host the redirect names.
func withoutReferer(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		req.Header.Del("Referer")
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// fetchError is an HTTP failure that is not about the bytes themselves, so
// that a gzip reader above it does not call the stream corrupt. code is the
// HTTP status that ended it, when one did (see HTTPStatus).
type fetchError struct {
	msg   string
	code  int
	cause error // a Permanent error that ended it, kept for errors.As
}

func (e *fetchError) Error() string { return e.msg }
func (e *fetchError) Unwrap() error { return e.cause }

// Permanent is an error of the HTTP client's own (its dialer's, its
// redirect policy's) that asking again cannot change, such as a URL the
// client is not allowed to reach: no retry, and errors.As finds it in the
// source's error.
type Permanent interface {
	error
	Permanent() bool
}

// HTTPStatus is the HTTP status code that made a source fail for good (a
// 404, a 410 Gone of an expired export's file, a 401), or 0 when err is
// no such failure.
func HTTPStatus(err error) int {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe.code
	}
	return 0
}

func fetchErrorf(format string, args ...any) error {
	return &fetchError{msg: fmt.Sprintf(format, args...)}
}

// errIdle is the cause of a request's context when its idle timer fired.
var errIdle = errors.New("idle")

// request is the lifetime of one HTTP request: a context of its own, which
// its idle timer cancels with errIdle. The timer runs only while somebody
// waits for the server (the headers, a Read of the body): a slow reader
// downstream is not a silent server.
type request struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer // nil: no idle timeout
	idle   time.Duration
}

// newRequest starts a request's context with its timer running.
func newRequest(parent context.Context, idle time.Duration) *request {
	ctx, cancel := context.WithCancelCause(parent)
	r := &request{ctx: ctx, cancel: cancel, idle: idle}
	if idle > 0 {
		r.timer = time.AfterFunc(idle, func() { cancel(errIdle) })
	}
	return r
}

func (r *request) wait() {
	if r.timer != nil {
		r.timer.Reset(r.idle)
	}
}

func (r *request) done() {
	if r.timer != nil {
		r.timer.Stop()
	}
}

// timedOut reports whether the idle timer ended the request.
func (r *request) timedOut() bool { return errors.Is(context.Cause(r.ctx), errIdle) }

func (r *request) end() {
	r.done()
	r.cancel(context.Canceled)
}

// httpBody is an HTTP response body that survives dropped connections and
// silent servers by asking again: from the start while nothing has been
// delivered, else for the rest with a Range request guarded by If-Range.
//
// Close may come while a Read waits for the network in another goroutine
// (gzip's read-ahead; pgx's COPY reader when the server broke off): it
// cancels ctx, which ends that wait, and body, req and closed change under
// mu.
type httpBody struct {
	stream
	url       string
	validator string // a strong ETag or Last-Modified; "" means no resume
	etag      bool   // validator is an ETag
	rangeOK   bool
}

func openHTTP(ctx context.Context, spec string, opts Options) (*httpBody, error) {
	ctx, stop := context.WithCancel(ctx)
	h := &httpBody{stream: stream{ctx: ctx, stop: stop, opts: opts, size: -1}, url: spec}
	resp, req, err := h.get(0)
	if err != nil {
		stop()
		return nil, err
	}
	h.start(resp, req)
	return h, nil
}

// start takes a whole body (a 200) and what it says about resuming it.
func (h *httpBody) start(resp *http.Response, req *request) {
	h.setBody(resp.Body, req)
	h.size = resp.ContentLength
	h.rangeOK = resp.Header.Get("Accept-Ranges") == "bytes"
	h.validator, h.etag = "", false
	// If-Range needs a strong validator: a resumed body must be the same
	// object. Without one a Range request may splice two versions of a file
	// replaced in between, so there is no resume at all.
	if etag := resp.Header.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		h.validator, h.etag = etag, true
	} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
		h.validator = lm
	}
}

func (h *httpBody) resumable() bool {
	return h.rangeOK && h.size >= 0 && h.validator != ""
}

// get requests the body from offset off (0: all of it), retrying what is
// worth retrying. The request it returns is running, its timer stopped.
func (h *httpBody) get(off int64) (*http.Response, *request, error) {
	delay := h.opts.Backoff
	var last string
	for try := 1; try <= h.opts.Tries; try++ {
		rq := newRequest(h.ctx, h.opts.IdleTimeout)
		req, err := http.NewRequestWithContext(rq.ctx, http.MethodGet, h.url, nil)
		if err != nil {
			rq.end()
			return nil, nil, fetchErrorf("bad URL: %s", NetMessage(err))
		}
		if off > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
			req.Header.Set("If-Range", h.validator)
		}
		resp, err := h.opts.Client.Do(req)
		rq.done()
		wait := delay
		switch {
		case err != nil:
			rq.end()
			if h.ctx.Err() != nil {
				return nil, nil, h.ctx.Err()
			}
			var p Permanent
			if errors.As(err, &p) && p.Permanent() {
				return nil, nil, &fetchError{msg: NetMessage(err), cause: p}
			}
			if rq.timedOut() {
				last = h.noData()
			} else {
				last = NetMessage(err)
			}
		case resp.StatusCode == http.StatusOK && off == 0, resp.StatusCode == http.StatusPartialContent && off > 0:
			return resp, rq, nil
		case off > 0 && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable):
			// If-Range failed (the file changed), or the server ignored the Range.
			resp.Body.Close()
			rq.end()
			return nil, nil, fmt.Errorf("%w (HTTP %s to a Range request)", ErrRestart, resp.Status)
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			last = "HTTP " + resp.Status
			if ra, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				wait = ra
			}
			drain(resp, rq)
		default:
			drain(resp, rq)
			return nil, nil, &fetchError{msg: "HTTP " + resp.Status, code: resp.StatusCode}
		}
		if try == h.opts.Tries {
			break
		}
		wait = min(wait, h.opts.MaxDelay)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-h.ctx.Done():
			t.Stop()
			return nil, nil, h.ctx.Err()
		}
		delay *= 2
	}
	return nil, nil, fetchErrorf("%s (gave up after %d tries)", last, h.opts.Tries)
}

// drain reads a little of an error response (so its connection can be
// reused) and ends its request.
func drain(resp *http.Response, rq *request) {
	rq.wait()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	rq.end()
}

// RetryAfter reads a Retry-After header: seconds, or an HTTP date (how
// long from now until then, 0 if it is past).
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// NetMessage is a network error without the URL that net/http puts in it
// (with its query string); what is left may still quote one (a bad Location
// header), hence RedactText.
func NetMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return RedactText(err.Error())
}

// shortDuration prints 60s as "1m", not "1m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (h *httpBody) Read(p []byte) (int, error) { return h.read(p, h.again) }

// again replaces a body that broke off for reason, or says why it cannot.
func (h *httpBody) again(reason string) error {
	if h.off > 0 && !h.resumable() {
		return fmt.Errorf("%w (%s)", ErrRestart, reason)
	}
	if h.breaks++; h.breaks >= h.opts.Tries {
		return fetchErrorf("%s (gave up after %d tries)", reason, h.breaks)
	}
	resp, rq, err := h.get(h.off)
	if err != nil {
		return err
	}
	if h.off == 0 {
		// Nothing was delivered: any version of the file will do.
		h.start(resp, rq)
		return nil
	}
	if !h.sameObject(resp) {
		resp.Body.Close()
		rq.end()
		return fmt.Errorf("%w (the resumed response is not the rest of the same file)", ErrRestart)
	}
	h.setBody(resp.Body, rq)
	return nil
}

// sameObject checks a 206 against the first response: it starts where we
// are, the full length is the same, and so is a strong ETag if it has one.
func (h *httpBody) sameObject(resp *http.Response) bool {
	if h.etag {
		if etag := resp.Header.Get("ETag"); etag != "" && etag != h.validator {
			return false
		}
	}
	// "bytes 100-199/200"
	rest, ok := strings.CutPrefix(resp.Header.Get("Content-Range"), "bytes ")
	if !ok {
		return false
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok || total != "*" && total != strconv.FormatInt(h.size, 10) {
		return false
	}
	start, _, ok := strings.Cut(span, "-")
	return ok && start == strconv.FormatInt(h.off, 10)
}

// Close ends the body; a Read waiting for the network in another goroutine
// returns.
func (h *httpBody) Close() error {
	h.close()
	return nil
}
