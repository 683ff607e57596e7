package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// sharedLockKey serializes the creation of the objects all types share.
// The key is arbitrary but fixed: every fhirbulk process takes the same one.
const sharedLockKey = 7262347102938455101

// typeLockClass is the first key of the per-type writer locks
// (pg_advisory_xact_lock(class, hash of the table name)).
const typeLockClass = 0x66686972 // "fhir"

func typeLockKey(t string) int32 {
	h := fnv.New32a()
	h.Write([]byte(TableName(t))) // a hash does not fail
	return int32(h.Sum32())
}

// LockOrder sorts types into the order in which a transaction must take
// their writer locks: the same order in every process, so that two loads of
// the same types never wait on each other in a cycle.
func LockOrder(types []string) {
	slices.SortFunc(types, func(a, b string) int {
		if ka, kb := typeLockKey(a), typeLockKey(b); ka != kb {
			if ka < kb {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
}

// LockType takes type t's writer lock for the rest of transaction tx. Every
// fhirbulk writer of a type takes it before it creates or changes the
// type's tables, so writers of one type run one after the other: their
// UPDATEs never meet rows another load changed meanwhile (which PostgreSQL
// re-checks one by one against the whole staging table, and which can
// deadlock), and a version archived to _history is the one replaced. A
// transaction that needs several types takes them in LockOrder.
func LockType(ctx context.Context, tx pgx.Tx, t string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, typeLockClass, typeLockKey(t))
	return err
}

// EnsureShared creates what all types share when it is missing: the
// resource_status enum and the global transaction_id_seq. It commits at
// once (on conn, outside any transaction): these are part of every Aidbox
// database, not of one load.
func EnsureShared(ctx context.Context, conn *pgx.Conn) error {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT to_regtype('resource_status') IS NOT NULL
		AND to_regclass('transaction_id_seq') IS NOT NULL`).Scan(&ok); err != nil || ok {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) // a no-op after Commit
	for _, s := range []string{
		// CREATE ... IF NOT EXISTS alone still races on the catalogs.
		`SELECT pg_advisory_xact_lock(` + fmt.Sprint(sharedLockKey) + `)`,
		`DO $$ BEGIN
			CREATE TYPE resource_status AS ENUM ('created', 'updated', 'deleted', 'recreated');
		EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`CREATE SEQUENCE IF NOT EXISTS transaction_id_seq`,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("create the storage layout: %w", pg.Wrap(err))
		}
	}
	return tx.Commit(ctx)
}

// columns are the columns of a resource table and its history table, with
// their types as format_type names them.
var columns = []struct{ name, typ string }{
	{"id", "text"},
	{"txid", "bigint"},
	{"ts", "timestamp with time zone"},
	{"cts", "timestamp with time zone"},
	{"resource_type", "text"},
	{"status", "resource_status"},
	{"resource", "jsonb"},
}

const columnsDDL = `id text NOT NULL,
	txid bigint NOT NULL,
	ts timestamptz DEFAULT now(),
	cts timestamptz DEFAULT now(),
	resource_type text,
	status resource_status NOT NULL,
	resource jsonb NOT NULL`

// prepareTables creates type t's tables in tx when they are missing, and
// checks the layout of those that exist. The caller holds t's writer lock,
// so no other fhirbulk process creates them meanwhile. It reports whether
// both existed and passed the check.
func prepareTables(ctx context.Context, tx pgx.Tx, t string) (existed bool, err error) {
	existed = true
	for i, tab := range []struct {
		name, ident string
		key         []string
	}{
		{TableName(t), Table(t), []string{"id"}},
		{TableName(t) + "_history", HistoryTable(t), []string{"id", "txid"}},
	} {
		problem, found, _, err := checkLayout(ctx, tx, tab.name, tab.key)
		switch {
		case err != nil:
			return false, err
		case problem != "":
			return false, fmt.Errorf("table %s is not in the Aidbox layout: %s", tab.ident, problem)
		case found && i == 0:
			if err := checkSpelling(ctx, tx, t); err != nil {
				return false, err
			}
		case !found:
			existed = false
			ddl := `CREATE TABLE ` + tab.ident + ` (` + columnsDDL + `, PRIMARY KEY (` + strings.Join(tab.key, ", ") + `))`
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return false, fmt.Errorf("create table %s: %w", tab.ident, pg.Wrap(err))
			}
		}
	}
	return existed, nil
}

// whereOf names the database q runs on, for a message.
func whereOf(q Querier) string {
	var conn *pgx.Conn
	switch q := q.(type) {
	case *pgx.Conn:
		conn = q
	case pgx.Tx:
		conn = q.Conn()
	}
	if conn == nil {
		return "the database"
	}
	return pg.Where(&conn.Config().Config)
}

// Querier runs a query: a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// checkSpelling refuses type t when its table holds resources of a type
// spelled otherwise: "Foo" and "FOO" would share the table foo.
func checkSpelling(ctx context.Context, q Querier, t string) error {
	var stored *string
	err := q.QueryRow(ctx, `SELECT resource_type FROM `+Table(t)+` WHERE resource_type IS NOT NULL LIMIT 1`).Scan(&stored)
	if err != nil && err != pgx.ErrNoRows {
		return fmt.Errorf("table %s: %w", Table(t), pg.Wrap(err))
	}
	if stored != nil && *stored != t && strings.EqualFold(*stored, t) {
		return fmt.Errorf("bad resource type %q: table %s holds resources of type %q (type names are case-sensitive)", t, Table(t), *stored)
	}
	return nil
}

// ErrNoTable is returned (wrapped) by CheckTable for a type without a table.
var ErrNoTable = errors.New("no table for resource type")

// CheckTable checks, for a reader, that type t has a table (or a view)
// with the columns of the Aidbox layout that dump reads.
func CheckTable(ctx context.Context, q Querier, t string) error {
	problem, found, cols, err := checkLayout(ctx, q, TableName(t), nil)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("%w %q in %s%s", ErrNoTable, t, whereOf(q), DidYouMean(t))
	case problem != "":
		return fmt.Errorf("table %s is not in the Aidbox layout: %s", Table(t), problem)
	case cols["resource_type"] == "":
		return nil // a view without it: nothing to compare
	}
	return checkSpelling(ctx, q, t)
}

// checkLayout looks up table name (unquoted) and says what it lacks to be
// a resource table with primary key key: "" when nothing; found is false
// when there is no such relation. With no key it checks what a reader
// needs: the columns dump reads, of any relation (a view will do).
func checkLayout(ctx context.Context, q Querier, name string, key []string) (problem string, found bool, cols map[string]string, err error) {
	var kind string
	var colsJSON []byte
	var pk []string
	err = q.QueryRow(ctx, `SELECT c.relkind::text,
		(SELECT coalesce(json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)), '{}')
			FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
		(SELECT array_agg(a.attname::text ORDER BY k.i)
			FROM pg_index x CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, i)
			JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
			WHERE x.indrelid = c.oid AND x.indisprimary)
		FROM pg_class c WHERE c.oid = to_regclass($1)`, pgx.Identifier{name}.Sanitize()).Scan(&kind, &colsJSON, &pk)
	if err == pgx.ErrNoRows {
		return "", false, nil, nil
	}
	if err != nil {
		return "", false, nil, fmt.Errorf("table %s: %w", pgx.Identifier{name}.Sanitize(), pg.Wrap(err))
	}
	reading := key == nil
	if kind != "r" && kind != "p" && !reading {
		return "not a table (relkind " + kind + ")", true, nil, nil
	}
	have := map[string]string{}
	if err := json.Unmarshal(colsJSON, &have); err != nil {
		return "", true, nil, err
	}
	var problems []string
	for _, c := range columns {
		if reading && (c.name == "resource_type" || c.name == "status") {
			continue
		}
		switch typ, ok := have[c.name]; {
		case !ok:
			problems = append(problems, "no column "+c.name)
		case typ != c.typ:
			problems = append(problems, fmt.Sprintf("column %s is %s, not %s", c.name, typ, c.typ))
		}
	}
	if !reading && !slices.Equal(pk, key) {
		want := "no primary key on (" + strings.Join(key, ", ") + ")"
		if len(pk) > 0 {
			want += " (it is on (" + strings.Join(pk, ", ") + "))"
		}
		problems = append(problems, want)
	}
	return strings.Join(problems, "; "), true, have, nil
}

// EnsureTables creates type t's tables (and the shared objects) when they
// are missing, committed at once, and checks the layout of those that
// exist. Loads use a Layout instead, which creates them inside the load's
// transaction.
func EnsureTables(ctx context.Context, conn *pgx.Conn, t string) error {
	if err := ValidateType(t); err != nil {
		return err
	}
	if err := EnsureShared(ctx, conn); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) // a no-op after Commit
	if err := LockType(ctx, tx, t); err != nil {
		return err
	}
	if _, err := prepareTables(ctx, tx, t); err != nil {
		return err
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

// Layout readies resource tables for writing inside a load's transaction
// (Prepare), and hands out transaction_id_seq values (NextTxids). It keeps
// a connection of its own for what must commit at once: the shared objects
// (EnsureShared) and the txid blocks. One Layout serves one goroutine.
type Layout struct {
	DSN    string
	conn   *pgx.Conn
	shared bool
	ready  map[string]bool // types whose committed tables passed the layout check
}

// Prepare readies type t for writing in tx: it takes t's writer lock
// (LockType, held until tx ends), creates t's tables when they are missing
// (inside tx: if it rolls back, they are gone too), and checks the layout
// of tables that exist, once per Layout. A transaction that prepares
// several types must prepare them in LockOrder.
func (l *Layout) Prepare(ctx context.Context, tx pgx.Tx, t string) error {
	if err := ValidateType(t); err != nil {
		return err
	}
	if err := l.ensureShared(ctx); err != nil {
		return err
	}
	if err := LockType(ctx, tx, t); err != nil {
		return err
	}
	if l.ready[t] {
		return nil
	}
	existed, err := prepareTables(ctx, tx, t)
	if err != nil {
		return err
	}
	if existed { // tables made in tx are not known to be there until it commits
		if l.ready == nil {
			l.ready = map[string]bool{}
		}
		l.ready[t] = true
	}
	return nil
}

func (l *Layout) ensureShared(ctx context.Context) error {
	if l.shared {
		return nil
	}
	if err := l.connect(ctx); err != nil {
		return err
	}
	if err := EnsureShared(ctx, l.conn); err != nil {
		return err
	}
	l.shared = true
	return nil
}

// AdvanceTxids moves transaction_id_seq so that its next value is past
// txid, at once (on the Layout's own connection, outside any transaction:
// other sessions see it before the rows that carry txid are written), and
// returns the sequence's last value then. It never moves it back. (The
// read and the setval are one statement, not one atomic step: a session
// that draws past txid in between would see the sequence go back to txid.
// PostgreSQL offers no lock on a sequence that nextval respects.)
func (l *Layout) AdvanceTxids(ctx context.Context, txid int64) (int64, error) {
	if err := l.ensureShared(ctx); err != nil {
		return 0, err
	}
	var v int64
	err := l.conn.QueryRow(ctx, `SELECT CASE WHEN last_value < $1 OR (last_value = $1 AND NOT is_called)
		THEN setval('transaction_id_seq', $1) ELSE last_value END FROM transaction_id_seq`, txid).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("transaction_id_seq: %w", pg.Wrap(err))
	}
	return v, nil
}

// HasTable reports whether type t has a table (in the current schema
// search path), asked on the Layout's own connection: a load asks it while
// its own connection is busy with a COPY.
func (l *Layout) HasTable(ctx context.Context, t string) (bool, error) {
	if err := l.connect(ctx); err != nil {
		return false, err
	}
	var ok bool
	if err := l.conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, Table(t)).Scan(&ok); err != nil {
		return false, pg.Wrap(err)
	}
	return ok, nil
}

// Close closes the connection, if one was opened.
func (l *Layout) Close() {
	if l.conn != nil {
		l.conn.Close(context.Background())
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
		return nil, fmt.Errorf("transaction_id_seq: %w", pg.Wrap(err))
	}
	return ids, nil
}

func (l *Layout) connect(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	conn, err := pg.Connect(ctx, l.DSN)
	if err != nil {
		return err
	}
	l.conn = conn
	return nil
}
