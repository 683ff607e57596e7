package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/dumpsql"
)

// maxBody bounds a request body that is read whole ($dump-sql's query).
const maxBody = 1 << 20

// sqlRequest is the body of POST /$dump-sql (JSON or YAML).
type sqlRequest struct {
	Query  string `yaml:"query"`
	Format string `yaml:"format"` // fhirbulk's: csv, tsv, ndjson, sql, elastic-bulk
	Table  string `yaml:"table"`  // sql
	Index  string `yaml:"index"`  // elastic-bulk
}

// contentTypes of dump-sql's formats.
var contentTypes = map[string]string{
	"csv": "text/csv; charset=utf-8", "tsv": "text/tab-separated-values; charset=utf-8", "ndjson": "application/ndjson",
	"sql": "application/sql; charset=utf-8", "elastic-bulk": "application/x-ndjson",
}

// dumpSQL is POST /$dump-sql: any read-only query's rows, streamed. The
// format is the query parameter _format's (ndjson or json: ndjson), else
// the body's format, else TSV without a header, as Aidbox answers.
func (s *Server) dumpSQL(w http.ResponseWriter, r *http.Request, _ Caller) {
	req, status, err := readSQLRequest(w, r)
	if err != nil {
		writeOutcome(w, status, "invalid", err.Error())
		return
	}
	o := dumpsql.Options{Query: req.Query, Format: "tsv", Table: "dump", Index: "fhir", Timeout: s.cfg.StatementTimeout}
	if req.Format != "" {
		o.Format = req.Format
	}
	if req.Table != "" {
		o.Table = req.Table
	}
	if req.Index != "" {
		o.Index = req.Index
	}
	switch f := r.URL.Query().Get("_format"); f {
	case "":
	case "ndjson", "json":
		o.Format = "ndjson"
	default:
		writeOutcome(w, http.StatusBadRequest, "invalid", fmt.Sprintf("_format=%q: ndjson or json (without it: the body's format, else TSV)", f))
		return
	}
	for k := range r.URL.Query() {
		if k != "_format" {
			writeOutcome(w, http.StatusBadRequest, "invalid", fmt.Sprintf("unknown parameter %q ($dump-sql takes _format)", k))
			return
		}
	}
	if err := o.Check(); err != nil {
		var oe *dumpsql.OptionError
		if errors.As(err, &oe) && oe.Field != "query" {
			err = fmt.Errorf("%s %q: %s", oe.Field, oe.Value, oe.Reason)
		}
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}

	ctx := r.Context()
	conn := s.connect(w, r)
	if conn == nil {
		return
	}
	defer conn.Close(context.Background())
	start := &lazyHeader{w: w, contentType: contentTypes[o.Format]}
	bw := bufio.NewWriterSize(start, 256<<10)
	_, err = dumpsql.Run(ctx, conn, o, bw)
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case err == nil:
		start.begin()
	case ctx.Err() != nil:
		panic(http.ErrAbortHandler)
	case start.started:
		s.cfg.Log.Warn("dump-sql broken off", "error", err.Error())
		panic(http.ErrAbortHandler) // no final chunk: not a complete answer
	default:
		// The query's own error (syntax, a missing table, a write refused
		// in the read-only transaction, the statement timeout): the
		// caller's to fix.
		writeOutcome(w, http.StatusBadRequest, "invalid", firstLine(err.Error()))
	}
}

// readSQLRequest reads a $dump-sql body and checks it has a query.
func readSQLRequest(w http.ResponseWriter, r *http.Request) (sqlRequest, int, error) {
	var req sqlRequest
	if status, err := readBody(w, r, &req); err != nil {
		return req, status, err
	}
	if strings.TrimSpace(req.Query) == "" {
		return req, http.StatusBadRequest, errors.New("no query: want {query: ...}")
	}
	return req, 0, nil
}

// defaultStatementTimeout bounds a $dump-sql query unless configured.
const defaultStatementTimeout = 5 * time.Minute
