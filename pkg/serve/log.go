package serve

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// request is what the access log learns of a request while it is served.
type request struct {
	caller string
}

type requestKey struct{}

// setCaller names the caller of r in the access log.
func setCaller(r *http.Request, name string) {
	if info, ok := r.Context().Value(requestKey{}).(*request); ok {
		info.caller = name
	}
}

// logged writes one access log record per request: method, path (its
// query left out: it may hold a secret), status, bytes, duration, caller,
// client address; also for a response ended abnormally (a dump broken off:
// status 200, "aborted").
func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		info := &request{caller: "-"}
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, info))
		rw := &recorder{ResponseWriter: w}
		aborted := true
		defer func() {
			path := r.URL.Path
			if r.URL.RawQuery != "" {
				path += "?…"
			}
			status := rw.status
			if status == 0 {
				status = http.StatusOK
			}
			attrs := []any{slog.String("method", r.Method), slog.String("path", path), slog.Int("status", status),
				slog.Int64("bytes", rw.bytes), slog.Duration("duration", s.cfg.Now().Sub(start).Round(time.Millisecond)),
				slog.String("caller", info.caller), slog.String("remote", r.RemoteAddr)}
			if aborted {
				attrs = append(attrs, slog.Bool("aborted", true))
			}
			s.cfg.Log.Info("request", attrs...)
		}()
		next.ServeHTTP(rw, r)
		aborted = false
	})
}

// recorder counts what a handler writes.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom lets a file be sent as the server sends it (sendfile, for a
// $export file), counted.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := io.Copy(r.ResponseWriter, src) // the ResponseWriter's own ReadFrom
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush sends what is buffered.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
