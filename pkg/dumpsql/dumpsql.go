// Package dumpsql runs one query and streams its rows in one of five
// formats: csv, tsv, ndjson, a psql script (sql) or an Elasticsearch bulk
// body (elastic-bulk).
package dumpsql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// Formats are the dump-sql output formats, the first the default.
var Formats = []string{"csv", "tsv", "ndjson", "sql", "elastic-bulk"}

// Options say what Run runs and how it writes the rows.
type Options struct {
	Query    string
	Format   string        // one of Formats
	NoHeader bool          // csv: no header row
	Timeout  time.Duration // statement_timeout; 0: the server's
	Table    string        // sql: the table to create (default "dump")
	Index    string        // elastic-bulk: the index (default "fhir")
	// Progress, when set, is called with the rows written so far, every
	// 4096 rows and at the end.
	Progress func(rows int64)
}

// MaxTimeout is the longest Timeout: statement_timeout is an int of
// milliseconds (2^31-1 ms, about 596 hours).
const MaxTimeout = (1<<31 - 1) * time.Millisecond

// column is one result column as the encoders see it.
type column struct {
	name    string
	oid     uint32
	sqlType string // sql format: the type as format_type gives it
}

// encoder writes one format. Values are PostgreSQL's text output, nil for NULL.
type encoder interface {
	header(b []byte, cols []column) []byte
	row(b []byte, cols []column, vals [][]byte) []byte
	footer(b []byte) []byte
}

// Run runs the query in a READ ONLY transaction and streams its rows
// to w in the chosen format, without holding the result in memory. It
// returns how many rows it wrote. A query CheckQuery refuses never reaches
// the server: the error wraps ErrNotAQuery.
func Run(ctx context.Context, conn *pgx.Conn, o Options, w io.Writer) (int64, error) {
	if err := o.Check(); err != nil {
		return 0, err
	}
	enc, err := newEncoder(o)
	if err != nil {
		return 0, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, queryError(ctx, err)
	}
	defer tx.Rollback(context.Background()) // read only: nothing to keep
	if o.Timeout > 0 {
		ms := strconv.FormatInt(max(o.Timeout.Milliseconds(), 1), 10)
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = "+ms); err != nil {
			return 0, queryError(ctx, err)
		}
	}
	pc := conn.PgConn()
	var types []string
	if o.Format == "sql" {
		// The CREATE TABLE needs the result's column types before the rows.
		if types, err = resultTypes(ctx, conn, o.Query); err != nil {
			return 0, err
		}
	}
	rr := pc.ExecParams(ctx, o.Query, nil, nil, nil, nil)
	fields := rr.FieldDescriptions()
	cols := make([]column, len(fields))
	for i, f := range fields {
		cols[i] = column{name: f.Name, oid: f.DataTypeOID}
		if i < len(types) {
			cols[i].sqlType = types[i]
		}
	}
	if o.Format == "ndjson" || o.Format == "elastic-bulk" {
		// A JSON object with a key twice: most readers keep one value and
		// drop the other without a word.
		seen := make(map[string]bool, len(cols))
		for _, c := range cols {
			if seen[c.name] {
				rr.Close() // this error is the one to report
				return 0, &DuplicateColumnError{Name: c.name, Format: o.Format}
			}
			seen[c.name] = true
		}
	}
	var b []byte
	var n int64
	var werr error
	flush := func() {
		if werr == nil && len(b) > 0 {
			_, werr = w.Write(b)
		}
		b = b[:0]
	}
	b = enc.header(b, cols)
	for rr.NextRow() {
		b = enc.row(b, cols, rr.Values())
		n++
		if o.Progress != nil && n&4095 == 0 {
			o.Progress(n)
		}
		if len(b) >= 64<<10 {
			if flush(); werr != nil {
				rr.Close() // the writer's error is the one to report
				return n, werr
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return n, queryError(ctx, err)
	}
	b = enc.footer(b)
	if flush(); werr != nil {
		return n, werr
	}
	if o.Progress != nil {
		o.Progress(n)
	}
	return n, nil
}

// resultTypes describes the query (without running it) and names each
// result column's type as SQL: "numeric(10,2)", "timestamp with time zone".
func resultTypes(ctx context.Context, conn *pgx.Conn, query string) ([]string, error) {
	sd, err := conn.PgConn().Prepare(ctx, "", query, nil)
	if err != nil {
		return nil, queryError(ctx, err)
	}
	types := make([]string, len(sd.Fields))
	for i, f := range sd.Fields {
		var t string
		var builtin bool
		if err := conn.QueryRow(ctx, `SELECT format_type($1, $2),
				coalesce((SELECT typnamespace = 'pg_catalog'::regnamespace FROM pg_type WHERE oid = $1), false)`,
			f.DataTypeOID, f.TypeModifier).Scan(&t, &builtin); err != nil {
			return nil, queryError(ctx, err)
		}
		switch {
		case t == "unknown" || t == "record" || t == "anyelement" || t == "void" || t == "-":
			t = "text" // pseudo-types cannot be column types
		case !builtin:
			// A type of this database (the resource_status enum, a domain,
			// an extension's type) may not exist where the script is
			// replayed: its values as text load anywhere.
			t = "text /* " + strings.ReplaceAll(t, "*/", "* /") + " */"
		}
		types[i] = t
	}
	return types, nil
}

func queryError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "42601" && strings.Contains(pgErr.Message, "multiple commands") {
			return errors.New("query: one statement only (this has several, separated by \";\")")
		}
		return fmt.Errorf("query: %w", pg.Wrap(err))
	}
	return err
}

func newEncoder(o Options) (encoder, error) {
	switch o.Format {
	case "", "csv":
		return csvEncoder{withHeader: !o.NoHeader}, nil
	case "tsv":
		return tsvEncoder{}, nil
	case "ndjson":
		return ndjsonEncoder{}, nil
	case "sql":
		table := o.Table
		if table == "" {
			table = "dump"
		}
		return &sqlEncoder{table: table}, nil
	case "elastic-bulk":
		index := o.Index
		if index == "" {
			index = "fhir"
		}
		return &elasticEncoder{index: index}, nil
	}
	return nil, fmt.Errorf("unknown format %q", o.Format)
}

// OptionError is an Options field whose value Run cannot take. Field is
// the option's name in lower case (format, timeout, query); Value, when
// set, the value as the message names it.
type OptionError struct {
	Field  string
	Value  string
	Reason string
}

func (e *OptionError) Error() string { return e.Field + e.value() + ": " + e.Reason }

func (e *OptionError) value() string {
	if e.Value == "" {
		return ""
	}
	return " " + e.Value
}

// Check refuses the options Run cannot run with, before any query: an
// unknown Format, a Timeout out of statement_timeout's range, an empty
// Query (an *OptionError), a statement that is not a query (CheckQuery).
func (o Options) Check() error {
	if o.Format != "" && !slices.Contains(Formats, o.Format) {
		return &OptionError{Field: "format", Reason: fmt.Sprintf("%q is not one of %s", o.Format, strings.Join(Formats, ", "))}
	}
	if o.Timeout < 0 {
		return &OptionError{Field: "timeout", Reason: "must not be negative"}
	}
	if o.Timeout > MaxTimeout {
		return &OptionError{Field: "timeout", Value: o.Timeout.String(), Reason: fmt.Sprintf("at most %s (PostgreSQL's statement_timeout counts milliseconds up to 2^31-1); 0 is no timeout", MaxTimeout)}
	}
	if strings.TrimSpace(o.Query) == "" {
		return &OptionError{Field: "query", Reason: "the query is empty"}
	}
	return CheckQuery(o.Query)
}

// DuplicateColumnError is a result with two columns of one name, refused
// for a JSON format: most readers of a JSON object with a key twice keep
// one value and drop the other without a word.
type DuplicateColumnError struct {
	Name   string
	Format string
}

func (e *DuplicateColumnError) Error() string {
	return fmt.Sprintf("column name %q appears twice in the result: give the columns distinct names (... AS %s)", e.Name, pgx.Identifier{e.Name + "_2"}.Sanitize())
}

// ErrNotAQuery is wrapped by the error of CheckQuery (and Run) for a
// statement that is not a query; the caller may treat it as a usage error.
var ErrNotAQuery = errors.New("dump-sql runs one SELECT, WITH, VALUES or TABLE query")

// CheckQuery accepts a statement that begins (after whitespace, -- and
// nested /* */ comments and opening parentheses, as PostgreSQL reads it)
// with SELECT, WITH, VALUES or TABLE, in any case. Anything else, COPY (TO
// PROGRAM runs a shell command on the server), LOCK, SET, DO, CALL,
// EXPLAIN (ANALYZE runs its statement), INSERT, …, is refused with an error
// wrapping ErrNotAQuery that names it.
//
// It is one of three guards, each covering what the others do not: the READ
// ONLY transaction refuses writes (a data-changing WITH, SELECT INTO, SELECT
// FOR UPDATE), the extended protocol refuses a second statement. None
// stops a SELECT from calling a function with side effects
// (pg_terminate_backend, pg_read_file, advisory locks) that the role may
// call.
func CheckQuery(query string) error {
	word, first := statementStart(query)
	if word != "" {
		switch asciiUpper(word) {
		case "SELECT", "WITH", "VALUES", "TABLE":
			return nil
		}
		if len(word) > 32 {
			word = strings.ToValidUTF8(word[:32], "") + "…"
		}
		return fmt.Errorf("query: %w, not %s", ErrNotAQuery, asciiUpper(word))
	}
	if first == 0 {
		return fmt.Errorf("query: %w, not an empty one", ErrNotAQuery)
	}
	return fmt.Errorf("query: %w, not a statement beginning with %q", ErrNotAQuery, first)
}

// statementStart returns the first word of query's statement: the leading
// run of identifier characters once whitespace, comments and opening
// parentheses are skipped. When the statement does not begin with a word,
// word is "" and first is its first character (0 when there is none).
func statementStart(query string) (word string, first rune) {
	q := query
	for {
		switch {
		case q == "":
			return "", 0
		case strings.IndexByte(" \t\n\r\f\v(", q[0]) >= 0:
			q = q[1:]
		case strings.HasPrefix(q, "--"):
			end := strings.IndexAny(q, "\n\r")
			if end < 0 {
				return "", 0
			}
			q = q[end:]
		case strings.HasPrefix(q, "/*"):
			// Comments nest in PostgreSQL; an unclosed one runs to the end.
			depth := 0
			for q != "" {
				switch {
				case strings.HasPrefix(q, "/*"):
					depth++
					q = q[2:]
				case strings.HasPrefix(q, "*/"):
					depth--
					q = q[2:]
				default:
					q = q[1:]
				}
				if depth == 0 {
					break
				}
			}
		default:
			n := 0
			for n < len(q) && isIdentByte(q[n], n == 0) {
				n++
			}
			if n == 0 {
				r, _ := utf8.DecodeRuneInString(q)
				return "", r
			}
			return q[:n], 0
		}
	}
}

// isIdentByte reports whether c may be part of an unquoted identifier or
// keyword, as PostgreSQL's lexer has it (bytes of non-ASCII letters
// included, so that "selectä" is one word, not SELECT).
func isIdentByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_', c >= 0x80:
		return true
	case '0' <= c && c <= '9', c == '$':
		return !first
	}
	return false
}

// asciiUpper upper-cases ASCII letters only: keywords are ASCII, and
// Unicode case folding would make "ſelect" SELECT.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
