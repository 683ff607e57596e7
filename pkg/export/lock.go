package export

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Table locks. TRUNCATE and a table rewrite (ALTER TABLE ... ADD COLUMN
// ... DEFAULT random(), VACUUM FULL, CLUSTER) are not MVCC-safe: a
// snapshot taken before them and reading after them sees the table empty,
// and the type would vanish from the export. They take ACCESS EXCLUSIVE,
// which an ACCESS SHARE lock held by the export keeps out. So, as pg_dump
// does, the coordinator locks every selected table (and its _history table
// when deletions are read) IN ACCESS SHARE MODE right after the snapshot,
// having read only the catalog, and holds the locks until the export ends;
// a TRUNCATE then waits for the export. The window between the snapshot
// and the locks is the catalog read, as pg_dump's. A table that another
// session holds in a conflicting mode is waited for up to lock_timeout
// (Options.Wait), then the export fails naming it: waiting without bound
// would also queue every reader of that table behind the export.
//
// The workers' own reads take ACCESS SHARE too; when a TRUNCATE is already
// queued on a table (waiting for the coordinator), a worker's request
// would queue behind it and never be granted: a deadlock PostgreSQL cannot
// see, since the coordinator waits for the worker in Go, not in the lock
// manager. A worker therefore locks a table NOWAIT before it reads it, and
// hands the task to the coordinator when it cannot (the coordinator holds
// the lock already, so its reads never wait). pg_dump --jobs fails there
// instead.

// LockError is a table another session held locked beyond the wait.
type LockError struct {
	Table  string // quoted
	Waited time.Duration
	Err    error
}

func (e *LockError) Error() string {
	return fmt.Sprintf("table %s is locked by another session (TRUNCATE, ALTER TABLE, VACUUM FULL, ...): gave up after waiting %s for it", e.Table, e.Waited)
}
func (e *LockError) Unwrap() error { return e.Err }

// errOnCoordinator says a task must be done by the coordinator.
var errOnCoordinator = errors.New("table lock queued: task goes to the coordinator")

func isLockNotAvailable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// sessionSettings are an export session's settings, as pg_dump's: a
// role's statement_timeout or idle_in_transaction_session_timeout would end
// a long COPY, or the coordinator's transaction (idle while the workers
// read), half-way; lock_timeout bounds the wait for a table lock (wait < 0:
// the role's stays).
func sessionSettings(wait time.Duration) map[string]string {
	s := map[string]string{"statement_timeout": "0", "idle_in_transaction_session_timeout": "0"}
	if wait >= 0 {
		s["lock_timeout"] = fmt.Sprintf("%dms", max(wait.Milliseconds(), 1)) // 0 would mean forever
	}
	return s
}

// lockTables locks the tables (unquoted names) IN ACCESS SHARE MODE in tx,
// and their _history tables too when history, one by one so that an error
// names the table.
func lockTables(ctx context.Context, tx pgx.Tx, tables []string, history bool, wait time.Duration) error {
	for _, t := range tables {
		names := []string{t}
		if history {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{t + "_history"}.Sanitize()).Scan(&exists); err != nil {
				return pg.Wrap(err)
			}
			if exists {
				names = append(names, t+"_history")
			}
		}
		for _, n := range names {
			q := pgx.Identifier{n}.Sanitize()
			if _, err := tx.Exec(ctx, `LOCK TABLE `+q+` IN ACCESS SHARE MODE`); err != nil {
				if isLockNotAvailable(err) {
					return &LockError{Table: q, Waited: wait, Err: err}
				}
				return fmt.Errorf("lock table %s: %w", q, pg.Wrap(err))
			}
		}
	}
	return nil
}

// lockNowait locks the tables task t reads in a worker's transaction, or
// returns errOnCoordinator when one of them has a lock request queued.
func lockNowait(ctx context.Context, tx pgx.Tx, t task) error {
	tables := []string{store.Table(t.typ)}
	if t.deleted {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, store.HistoryTable(t.typ)).Scan(&exists); err != nil {
			return pg.Wrap(err)
		}
		if exists {
			tables = append(tables, store.HistoryTable(t.typ))
		}
	}
	// In a savepoint: a failed statement would spoil the transaction (and
	// its snapshot) for the tasks after this one. Locks taken in it pass
	// to the transaction when it is released.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return pg.Wrap(err)
	}
	for _, q := range tables {
		if _, err := sp.Exec(ctx, `LOCK TABLE `+q+` IN ACCESS SHARE MODE NOWAIT`); err != nil {
			sp.Rollback(ctx) // the error below is the one to report
			if isLockNotAvailable(err) {
				return errOnCoordinator
			}
			return fmt.Errorf("lock table %s: %w", q, pg.Wrap(err))
		}
	}
	return pg.Wrap(sp.Commit(ctx))
}
