package pg

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// typeName is what a resource type name may look like. Its character set
// makes every table name a plain identifier once lowercased; it is still
// always quoted, never formatted into SQL.
var typeName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}$`)

// ValidateType checks a resource type name before any SQL runs.
func ValidateType(t string) error {
	if !typeName.MatchString(t) {
		return fmt.Errorf("bad resource type %q: it must match ^[A-Z][A-Za-z0-9]{0,63}$", t)
	}
	return nil
}

// Table is the quoted identifier of the table holding resources of type t
// (the lowercased type name, as Aidbox names it).
func Table(t string) string {
	return pgx.Identifier{strings.ToLower(t)}.Sanitize()
}

// HistoryTable is the quoted identifier of the history table of type t.
func HistoryTable(t string) string {
	return pgx.Identifier{strings.ToLower(t) + "_history"}.Sanitize()
}

// EnsureTables creates the storage layout for resource type t when it is
// missing: the resource_status enum, the global transaction_id_seq sequence,
// and the type's table and history table. It is idempotent, and safe to run
// from several processes at once: a transaction-scoped advisory lock
// serializes the DDL (CREATE ... IF NOT EXISTS alone still races on the
// catalogs).
func EnsureTables(ctx context.Context, conn *pgx.Conn, t string) error {
	if err := ValidateType(t); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	stmts := []string{
		// The key is arbitrary but fixed: every fhirbulk process takes the same one.
		`SELECT pg_advisory_xact_lock(7262347102938455101)`,
		`DO $$ BEGIN
			CREATE TYPE resource_status AS ENUM ('created', 'updated', 'deleted', 'recreated');
		EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`CREATE SEQUENCE IF NOT EXISTS transaction_id_seq`,
		`CREATE TABLE IF NOT EXISTS ` + Table(t) + ` (
			id text PRIMARY KEY,
			txid bigint NOT NULL,
			ts timestamptz DEFAULT now(),
			cts timestamptz DEFAULT now(),
			resource_type text,
			status resource_status NOT NULL,
			resource jsonb NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + HistoryTable(t) + ` (
			id text NOT NULL,
			txid bigint NOT NULL,
			ts timestamptz DEFAULT now(),
			cts timestamptz DEFAULT now(),
			resource_type text,
			status resource_status NOT NULL,
			resource jsonb NOT NULL,
			PRIMARY KEY (id, txid))`,
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("create tables for %s: %s", t, ErrorLine(err))
		}
	}
	return tx.Commit(ctx)
}

// EstimateRows is the planner's row count of type t's table (for progress
// bars), or -1 when unknown: never analyzed, no table, or an error.
func EstimateRows(ctx context.Context, conn *pgx.Conn, t string) int64 {
	var n int64
	err := conn.QueryRow(ctx, `SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)`, Table(t)).Scan(&n)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// Layout ensures the tables of resource types on a connection of its own,
// opened on first use, so that DDL commits at once and never waits on (or
// holds up) a load's transaction. Types it has ensured are remembered. The
// same connection hands out transaction_id_seq values (NextTxids).
type Layout struct {
	DSN  string
	conn *pgx.Conn
	done map[string]bool
}

// Ensure creates type t's tables when missing (see EnsureTables).
func (l *Layout) Ensure(ctx context.Context, t string) error {
	if l.done[t] {
		return nil
	}
	if err := l.connect(ctx); err != nil {
		return err
	}
	if err := EnsureTables(ctx, l.conn, t); err != nil {
		return err
	}
	if l.done == nil {
		l.done = map[string]bool{}
	}
	l.done[t] = true
	return nil
}

// Close closes the connection, if one was opened.
func (l *Layout) Close() {
	if l.conn != nil {
		l.conn.Close(context.Background()) //nolint:errcheck
		l.conn = nil
	}
}

// NextTxids takes n values of transaction_id_seq (not necessarily
// consecutive: other sessions may take values at the same time).
func (l *Layout) NextTxids(ctx context.Context, n int) ([]int64, error) {
	if err := l.connect(ctx); err != nil {
		return nil, err
	}
	rows, err := l.conn.Query(ctx, `SELECT nextval('transaction_id_seq') FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("transaction_id_seq: %s", ErrorLine(err))
	}
	return ids, nil
}

func (l *Layout) connect(ctx context.Context) error {
	if l.conn != nil {
		return nil
	}
	conn, err := Connect(ctx, l.DSN)
	l.conn = conn
	return err
}
