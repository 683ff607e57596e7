package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/pgzip"

	"github.com/fhirbulk/fhirbulk/pkg/dump"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// dump is GET /[type]/$dump (Aidbox format; FHIR with fhir=true, or under
// /fhir/): every resource of the type as ndjson, streamed from one COPY.
// _since keeps those created after it (as dump --since); gzip=true, or a
// client that accepts gzip, gets the body gzipped (Content-Encoding: gzip).
func (s *Server) dump(w http.ResponseWriter, r *http.Request, _ Caller) {
	typ := r.PathValue("type")
	if err := store.ValidateType(typ); err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "_since", "fhir", "gzip":
		default:
			writeOutcome(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown parameter %q ($dump takes _since, fhir, gzip)", k))
			return
		}
	}
	opts := dump.Options{Type: typ, FHIR: strings.HasPrefix(r.URL.Path, "/fhir/")}
	fhir, err := boolParam(q, "fhir")
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	opts.FHIR = opts.FHIR || fhir
	gz, err := boolParam(q, "gzip")
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	gz = gz || acceptsGzip(r)
	if v := q.Get("_since"); v != "" {
		if opts.Since, err = dump.ParseSince(v); err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", "_since: "+err.Error())
			return
		}
	}

	ctx := r.Context()
	conn := s.connect(w, r)
	if conn == nil {
		return
	}
	defer conn.Close(context.Background())
	tx, err := pg.BeginReadOnly(ctx, conn)
	if err != nil {
		s.databaseDown(w, r, err)
		return
	}
	defer tx.Rollback(context.Background()) // read only
	// CheckTable first: a missing type is a 404, not a 200 cut short.
	if err := store.CheckTable(ctx, tx, typ); err != nil {
		if errors.Is(err, store.ErrNoTable) {
			writeOutcome(w, http.StatusNotFound, "not-found", fmt.Sprintf("no resources of type %s here (no table)%s", typ, store.DidYouMean(typ)))
			return
		}
		s.failed(w, r, err)
		return
	}

	start := &lazyHeader{w: w, gzip: gz, contentType: "application/ndjson"}
	var out io.Writer = start
	var zw *pgzip.Writer
	if gz {
		zw = pgzip.NewWriter(start)
		out = zw
	}
	bw := bufio.NewWriterSize(out, 256<<10)
	_, err = dump.Dump(ctx, tx, opts, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	switch {
	case err == nil:
		start.begin() // an empty table: headers all the same
		return
	case ctx.Err() != nil:
		panic(http.ErrAbortHandler) // the client went away
	case start.started:
		s.cfg.Log.Warn("dump broken off", "type", typ, "error", err.Error())
		panic(http.ErrAbortHandler) // no final chunk: the client sees a cut stream
	default:
		s.failed(w, r, err)
	}
}

// lazyHeader writes the success headers before the first byte of body, so
// that a dump that fails before it can still answer an error status.
type lazyHeader struct {
	w           http.ResponseWriter
	contentType string
	gzip        bool
	started     bool
}

func (l *lazyHeader) begin() {
	if l.started {
		return
	}
	l.started = true
	h := l.w.Header()
	h.Set("Content-Type", l.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if l.gzip {
		h.Set("Content-Encoding", "gzip")
	}
	h.Add("Vary", "Accept-Encoding")
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyHeader) Write(p []byte) (int, error) {
	l.begin()
	return l.w.Write(p)
}

func boolParam(q map[string][]string, name string) (bool, error) {
	switch v := strings.Join(q[name], ","); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: true or false", name, v)
	}
}

// acceptsGzip reports whether the client says it takes gzip (an
// Accept-Encoding naming gzip, or *, without q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.TrimSpace(coding)
		if !strings.EqualFold(coding, "gzip") && coding != "*" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		return q > 0
	}
	return false
}

// connect opens a connection to the database for r, or answers 503
// (databaseDown) and returns nil.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) *pgx.Conn {
	conn, err := pg.Connect(r.Context(), s.cfg.DSN)
	if err != nil {
		s.databaseDown(w, r, err)
		return nil
	}
	return conn
}

// databaseDown answers 503: the database cannot be reached (the reason
// goes to the log, not to the caller).
func (s *Server) databaseDown(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		panic(http.ErrAbortHandler)
	}
	s.cfg.Log.Warn("database", "error", err.Error())
	w.Header().Set("Retry-After", "10")
	writeOutcome(w, http.StatusServiceUnavailable, "transient", "the database cannot be reached")
}

// failed answers 500 with err's one line (the packages' errors say what
// went wrong without SQL or secrets).
func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		panic(http.ErrAbortHandler)
	}
	s.cfg.Log.Warn("failed", "path", r.URL.Path, "error", err.Error())
	writeOutcome(w, http.StatusInternalServerError, "exception", firstLine(err.Error()))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
