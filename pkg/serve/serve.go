// Package serve is fhirbulk's HTTP server: the Aidbox Bulk API
// (GET /[type]/$dump, ...) over the packages the commands use, a peer of
// cmd. It is meant to be safe to expose: every operation needs
// credentials (bearer tokens with rights, or basic auth) unless the
// operator says otherwise, heavy operations are bounded in number (503
// with Retry-After beyond), bodies in size, and connections in time; errors
// are OperationOutcomes with the right status, never a stack trace; the
// access log names the caller, never a secret.
//
// Streams: a dump is written as it is read from the database, chunked, with
// flat memory; a client that goes away cancels its query at once; an error
// after the first bytes ends the response abnormally (no final chunk), so
// that no client takes a cut stream for a complete one.
package serve

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
)

// Config is a server's setup.
type Config struct {
	DSN  string // the database
	Auth *Auth  // nil or empty: no authentication (see Run's address rule)
	// MaxConcurrent bounds the heavy operations (dump, dump-sql, load,
	// import) running at once; beyond it a request gets 503 with
	// Retry-After. Default 4.
	MaxConcurrent int
	// ShutdownTimeout is how long a stopping server lets running requests
	// finish before it cancels them. Default 30s.
	ShutdownTimeout time.Duration
	// SMART, when set, registers SMART Backend Services clients: the
	// token endpoint and .well-known/smart-configuration are served.
	SMART *SMART
	// Exports, when set, serves HL7 Bulk Data $export under its Base.
	Exports *Exports
	// Store is the state folder of $import (nil: no $import).
	Store *bulkimport.Store
	// Sources decides which URLs callers may have the server fetch
	// ($load, $import).
	Sources *Sources
	// StatementTimeout bounds a $dump-sql query (statement_timeout).
	// Default 5 minutes.
	StatementTimeout time.Duration
	// Log receives the access log (one record per request) and the
	// server's own lines; nil: discarded.
	Log *slog.Logger
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// PublicURL, when set, is the scheme and host clients reach the
	// server at (https://fhir.example.org, behind a proxy that ends TLS):
	// the URLs the server gives (Content-Location, a manifest's files, the
	// token endpoint) and the aud a client assertion must name. Else as
	// each request came.
	PublicURL string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Server serves the Bulk API.
type Server struct {
	cfg  Config
	busy chan struct{} // a token per heavy operation under way
	mux  *http.ServeMux
	// stopping is set once shutdown began: new heavy work is refused.
	stopping atomic.Bool
	// imports is the context of background imports: cancelled when the
	// server begins to stop, so that they stop resumable at once.
	imports     context.Context
	stopImports context.CancelFunc
	// active counts the requests being served (and the imports running): a stopping server waits
	// for those it cancelled, whose queries are cancelled at the database
	// only while the process lives.
	active sync.WaitGroup

	healthMu  sync.Mutex // one database check of /health at a time
	healthAt  time.Time
	healthErr error
}

// New makes a server of cfg.
func New(cfg Config) *Server {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 4
	}
	if cfg.StatementTimeout <= 0 {
		cfg.StatementTimeout = defaultStatementTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Auth == nil {
		cfg.Auth = &Auth{}
	}
	if cfg.Sources == nil {
		cfg.Sources = &Sources{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, busy: make(chan struct{}, cfg.MaxConcurrent), mux: http.NewServeMux()}
	s.imports, s.stopImports = context.WithCancel(context.Background())
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("/health", only(http.MethodGet, s.health))
	s.mux.HandleFunc("/auth/token", only(http.MethodPost, s.token))
	s.mux.HandleFunc("/.well-known/smart-configuration", only(http.MethodGet, s.smartConfiguration))
	s.mux.HandleFunc("/fhir/.well-known/smart-configuration", only(http.MethodGet, s.smartConfiguration))
	s.mux.HandleFunc("/metadata", only(http.MethodGet, s.metadata))
	s.mux.HandleFunc("/$dump-sql", only(http.MethodPost, s.authorized(Read, s.heavy(s.dumpSQL))))
	load := only(http.MethodPost, s.authorized(Write, s.heavy(s.load)))
	s.mux.HandleFunc("/$load", load)
	s.mux.HandleFunc("/fhir/$load", load)
	imp := only(http.MethodPost, s.authorized(Write, s.importStart))
	s.mux.HandleFunc("/$import", imp)
	s.mux.HandleFunc("/fhir/$import", imp)
	// Two segments are told apart here: a pattern per operation would
	// conflict with /BulkImportStatus/ID (neither more specific).
	dump := only(http.MethodGet, s.authorized(Read, s.heavy(s.dump)))
	status := only(http.MethodGet, s.authorized(Read, s.importStatus))
	s.mux.HandleFunc("/{first}/{second}", func(w http.ResponseWriter, r *http.Request) {
		first, second := r.PathValue("first"), r.PathValue("second")
		switch {
		case first == "BulkImportStatus":
			r.SetPathValue("id", second)
			status(w, r)
		case second == "$dump":
			r.SetPathValue("type", first)
			dump(w, r)
		case second == "$load":
			r.SetPathValue("type", first)
			load(w, r)
		default:
			notFound(w, r)
		}
	})
	s.mux.HandleFunc("/fhir/{type}/{op}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("op") {
		case "$dump":
			dump(w, r)
		case "$load":
			load(w, r)
		default:
			notFound(w, r)
		}
	})
	s.mux.HandleFunc("/", notFound)
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeOutcome(w, http.StatusNotFound, "not-found", fmt.Sprintf("no operation %s %s", r.Method, r.URL.Path))
}

// only answers 405 (with Allow) to a request of another method than
// method: the catch-all 404 would take it otherwise.
func only(method string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", fmt.Sprintf("%s %s: only %s", r.Method, r.URL.Path, method))
			return
		}
		next(w, r)
	}
}

// Handler is the server's handler, with its access log.
func (s *Server) Handler() http.Handler {
	next := s.logged(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The Bulk Data paths are told apart before the mux: patterns
		// under a base of the operator's choice would conflict with
		// /{first}/{second}.
		if !s.bulkRoute(w, r) {
			s.mux.ServeHTTP(w, r)
		}
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.active.Add(1)
		defer s.active.Done()
		next.ServeHTTP(w, r)
	})
}

// Run serves on l until ctx ends, then stops gracefully: no new
// connections, running requests given ShutdownTimeout to finish, then
// cancelled.
func (s *Server) Run(ctx context.Context, l net.Listener) error {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // a body ($load, $import) within it
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return work },
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelDebug),
		TLSConfig:         s.cfg.TLS,
	}
	done := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			done <- srv.ServeTLS(l, "", "")
		} else {
			done <- srv.Serve(l)
		}
	}()
	s.resumeImports()
	if s.cfg.Exports != nil {
		go s.cfg.Exports.Sweep(work)
	}
	select {
	case err := <-done:
		s.stopImports()
		return err
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	s.stopImports() // they stop resumable, and go on when the server starts again
	s.cfg.Log.Info("stopping: running requests have " + s.cfg.ShutdownTimeout.String() + " to finish")
	stop, cancelStop := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancelStop()
	err := srv.Shutdown(stop)
	if errors.Is(err, context.DeadlineExceeded) {
		s.cfg.Log.Info("stopping: cancelling the requests still running")
		cancel() // their queries end, their responses end abnormally
		srv.Close()
		err = nil
	}
	waited := make(chan struct{})
	go func() {
		s.active.Wait()
		if s.cfg.Exports != nil {
			s.cfg.Exports.Wait() // cancelled with the imports: recorded as failed
		}
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		s.cfg.Log.Warn("stopping: requests did not end within 10s of their cancellation")
	}
	if e := <-done; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// authorized lets through requests whose caller has the rights need.
func (s *Server) authorized(need Rights, next func(w http.ResponseWriter, r *http.Request, c Caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := Caller{Name: "-", Rights: Read | Write}
		if s.authEnabled() {
			var err error
			if c, err = s.cfg.Auth.Check(r); errors.Is(err, errAuthBusy) {
				w.Header().Set("Retry-After", "1")
				writeOutcome(w, http.StatusServiceUnavailable, "throttled", "too many passwords being checked; try again")
				return
			} else if err != nil && s.smartToken(r) != tokenUnknown {
				writeOutcome(w, http.StatusForbidden, "forbidden", "a SMART access token opens the Bulk Data $export endpoints only")
				return
			} else if err != nil {
				s.challenge(w)
				msg := "authentication required"
				if errors.Is(err, errBadCredentials) {
					msg = "the credentials are not valid"
				}
				writeOutcome(w, http.StatusUnauthorized, "login", msg)
				return
			}
		}
		setCaller(r, c.Name)
		if c.Rights&need != need {
			writeOutcome(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s may not %s (its rights: %s)", c.Name, need, c.Rights))
			return
		}
		next(w, r, c)
	}
}

// authEnabled reports whether callers must authenticate: with tokens,
// users, or as SMART clients (who then open the Bulk Data endpoints only).
func (s *Server) authEnabled() bool { return s.cfg.Auth.Enabled() || s.cfg.SMART != nil }

// smartToken is what r's bearer token is to the SMART clients' tokens.
func (s *Server) smartToken(r *http.Request) tokenState {
	if s.cfg.SMART == nil {
		return tokenUnknown
	}
	tok, ok := bearer(r)
	if !ok {
		return tokenUnknown
	}
	_, st := s.cfg.SMART.lookup(tok, s.cfg.Now())
	return st
}

// bulkAuthorized lets through the callers of the Bulk Data endpoints:
// SMART clients with a live access token, and, as authorized(Read) does,
// the server's tokens and users. An expired SMART token is a 401 that says
// so, as RFC 6750 words it.
func (s *Server) bulkAuthorized(next func(w http.ResponseWriter, r *http.Request, c Caller)) http.HandlerFunc {
	plain := s.authorized(Read, next)
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.SMART != nil {
			if tok, ok := bearer(r); ok {
				switch is, st := s.cfg.SMART.lookup(tok, s.cfg.Now()); st {
				case tokenExpired:
					setCaller(r, is.client)
					w.Header().Set("WWW-Authenticate", `Bearer realm="fhirbulk", error="invalid_token", error_description="the access token expired"`)
					writeOutcome(w, http.StatusUnauthorized, "expired", "the access token expired: get a new one from the token endpoint")
					return
				case tokenLive:
					c := is.caller()
					setCaller(r, c.Name)
					next(w, r, c)
					return
				}
			}
		}
		plain(w, r)
	}
}

func (s *Server) challenge(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Bearer realm="fhirbulk"`)
	if s.cfg.Auth.Basic() {
		w.Header().Add("WWW-Authenticate", `Basic realm="fhirbulk", charset="UTF-8"`)
	}
}

// retryBusy is what a refused heavy request is told to wait.
const retryBusy = 5 * time.Second

// heavy runs next only if fewer than MaxConcurrent heavy operations run;
// else 503 with Retry-After.
func (s *Server) heavy(next func(w http.ResponseWriter, r *http.Request, c Caller)) func(w http.ResponseWriter, r *http.Request, c Caller) {
	return func(w http.ResponseWriter, r *http.Request, c Caller) {
		// The body is read before a slot is taken, within its own
		// deadline: a caller that sends it slowly holds no slot.
		if r.Body != nil && r.Method == http.MethodPost {
			if err := bufferBody(w, r); err != nil {
				writeOutcome(w, http.StatusRequestTimeout, "timeout", err.Error())
				return
			}
		}
		if s.stopping.Load() {
			w.Header().Set("Retry-After", fmt.Sprint(int(retryBusy.Seconds())))
			writeOutcome(w, http.StatusServiceUnavailable, "transient", "the server is stopping")
			return
		}
		select {
		case s.busy <- struct{}{}:
			defer func() { <-s.busy }()
			next(w, r, c)
		default:
			w.Header().Set("Retry-After", fmt.Sprint(int(retryBusy.Seconds())))
			writeOutcome(w, http.StatusServiceUnavailable, "throttled",
				fmt.Sprintf("busy: %d operations run already (--max-concurrent); try again later", s.cfg.MaxConcurrent))
		}
	}
}

// bodyTimeout bounds the reading of a request body.
const bodyTimeout = 30 * time.Second

// bufferBody reads r's body (up to maxBody+1 bytes, within bodyTimeout)
// into memory, for the handler to read again.
func bufferBody(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout)) // a recorder without it: the server's ReadTimeout holds
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("the body did not come within %s", bodyTimeout)
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	return nil
}
