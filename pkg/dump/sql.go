package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
)

// Formats are the dump-sql output formats, the first the default.
var Formats = []string{"csv", "tsv", "ndjson", "sql", "elastic-bulk"}

// SQLOptions say what DumpSQL runs and how it writes the rows.
type SQLOptions struct {
	Query    string
	Format   string        // one of Formats
	NoHeader bool          // csv: no header row
	Timeout  time.Duration // statement_timeout; 0: the server's
	Table    string        // sql: the table to create (default "dump")
	Index    string        // elastic-bulk: the index (default "fhir")
}

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

// DumpSQL runs the query in a READ ONLY transaction and streams its rows
// to w in the chosen format, without holding the result in memory. It
// returns how many rows it wrote.
func DumpSQL(ctx context.Context, conn *pgx.Conn, o SQLOptions, w io.Writer, bar *progress.Bar) (int64, error) {
	enc, err := newEncoder(o)
	if err != nil {
		return 0, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, queryError(ctx, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only: nothing to keep
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
		bar.Add(1)
		if len(b) >= 64<<10 {
			if flush(); werr != nil {
				rr.Close() //nolint:errcheck // the writer's error is the one to report
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
		if err := conn.QueryRow(ctx, "SELECT format_type($1, $2)", f.DataTypeOID, f.TypeModifier).Scan(&t); err != nil {
			return nil, queryError(ctx, err)
		}
		switch t {
		case "unknown", "record", "anyelement", "void", "-":
			t = "text" // pseudo-types cannot be column types
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
		return fmt.Errorf("query: %s", pg.ErrorLine(err))
	}
	return err
}

func newEncoder(o SQLOptions) (encoder, error) {
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
