package source

import (
	"context"
	"io"
	"sync"
)

// stream is what a remote body (http, s3) is besides its protocol: the
// body being read and the request it belongs to, how far the reader got,
// and the read loop that, when a body breaks off, delivers what arrived
// and then asks the protocol for the rest (again: a Range request, a
// ranged GET of the same version) or fails for good.
type stream struct {
	ctx    context.Context // the caller's, ended by Close too
	stop   context.CancelFunc
	opts   Options
	mu     sync.Mutex
	closed bool
	body   io.ReadCloser // nil once closed
	req    *request      // the request body belongs to
	off    int64         // bytes delivered to the reader
	size   int64         // full length, -1 if unknown
	breaks int           // bodies that broke off
	err    error         // sticky: once failed, the body stays failed

	// cause, when set, is the error a read failed with as a person is
	// told it (a library's wrapper taken off).
	cause func(error) error
}

// read is the Read of a stream whose protocol replaces a broken body with
// again(reason).
func (s *stream) read(p []byte, again func(reason string) error) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for {
		s.mu.Lock()
		body, req := s.body, s.req
		s.mu.Unlock()
		if body == nil {
			return 0, fetchErrorf("read after close")
		}
		req.wait()
		n, err := body.Read(p)
		req.done()
		s.off += int64(n)
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (s.size < 0 || s.off >= s.size) {
			return n, io.EOF
		}
		if s.ctx.Err() != nil {
			return n, s.ctx.Err()
		}
		if n > 0 {
			// Deliver what arrived; the next Read meets the error again.
			return n, nil
		}
		if s.cause != nil {
			err = s.cause(err)
		}
		reason := NetMessage(err)
		if req.timedOut() {
			reason = s.noData()
		}
		s.setBody(nil, nil)
		if s.size >= 0 && s.off >= s.size {
			return 0, io.EOF // all of it arrived; only the end broke
		}
		if s.err = again(reason); s.err != nil {
			return 0, s.err
		}
	}
}

// noData is the reason given when the idle timer ended a request.
func (s *stream) noData() string {
	return "no data for " + shortDuration(s.opts.IdleTimeout)
}

// setBody ends the current body's request, if any, and takes the next one
// (after Close: ends it too).
func (s *stream) setBody(body io.ReadCloser, req *request) {
	s.mu.Lock()
	old, oldReq := s.body, s.req
	s.body, s.req = body, req
	closed := s.closed
	if closed {
		s.body, s.req = nil, nil
	}
	s.mu.Unlock()
	if old != nil {
		old.Close()
		oldReq.end()
	}
	if closed && body != nil {
		body.Close()
		req.end()
	}
}

// close ends the stream: its context, and the body being read.
func (s *stream) close() {
	s.stop()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.setBody(nil, nil)
}
