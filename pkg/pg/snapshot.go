package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Snapshot is a moment of the database that several connections can read
// at once: the coordinator's transaction exports it, and keeps it alive
// until it is closed; each worker starts a transaction at it (BeginAt).
// pg_dump --jobs works this way.
type Snapshot struct {
	ID string    // pg_export_snapshot()'s name for it
	At time.Time // when it was taken (the server's clock)
	// Watermark is where an incremental export after this one must start
	// (its changes have ts >= Watermark): everything changed before it is
	// in this snapshot. See Take.
	Watermark time.Time
	tx        pgx.Tx
}

// WatermarkMargin is taken off the watermark: a transaction shows in
// pg_stat_activity a moment after its start time is set, and a second is
// many orders of magnitude more than that moment.
const WatermarkMargin = time.Second

// Take exports a snapshot from a REPEATABLE READ, READ ONLY transaction on
// conn, which stays open (and the connection busy) until Close. It sets no
// Watermark: TakeWatermarked does.
func Take(ctx context.Context, conn *pgx.Conn) (*Snapshot, error) {
	return take(ctx, conn)
}

func take(ctx context.Context, conn *pgx.Conn) (*Snapshot, error) {
	tx, err := BeginReadOnly(ctx, conn)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{tx: tx}
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot(), clock_timestamp()`).Scan(&s.ID, &s.At); err != nil {
		tx.Rollback(context.Background()) // the error above is the one to report
		return nil, fmt.Errorf("take a snapshot: %w", Wrap(err))
	}
	return s, nil
}

// HiddenTransactionsError is TakeWatermarked giving up: transactions whose
// start the role may not read were still open after the wait.
type HiddenTransactionsError struct {
	Role   string        // the role the export runs as
	Count  int           // transactions still open
	Waited time.Duration // how long Take waited for them
}

func (e *HiddenTransactionsError) Error() string {
	return fmt.Sprintf("%d transaction(s) of other roles still open after %s, and role %q cannot read when they began (pg_stat_activity.xact_start needs pg_read_all_stats)",
		e.Count, e.Waited, e.Role)
}

// TakeWatermarked is Take, with the snapshot's Watermark.
//
// The watermark. A writer stamps ts with now(), the start of its
// transaction, and its rows become visible when it commits. A transaction
// that began before the snapshot and commits after it is not in this
// snapshot, yet its ts is earlier than the snapshot's time: an export
// after this one that looked only at ts > At would miss it. So, before the
// snapshot is taken, TakeWatermarked reads the start of the oldest
// transaction open on this database (pg_stat_activity's xact_start) and
// the time of that reading: a transaction open when the snapshot is taken
// either was open at the reading (and started no earlier than the oldest)
// or began after it. The watermark is the earlier of the two, less
// WatermarkMargin, and the next export reads ts >= Watermark: every change
// not in this snapshot is in the next export. Rows may appear in both; a
// load is an upsert, so that is harmless. This assumes writers set ts to
// now() (as Aidbox does) on this one server's clock, and no prepared
// (two-phase) transaction is pending.
//
// A role that is neither a superuser nor has the privileges of
// pg_read_all_stats (nor those of the session's role) reads NULL for the
// xact_start of other roles' sessions: their transactions look like none,
// and a watermark made of what it sees would be silently wrong. What such
// a role does see is pg_locks, all of it: every transaction holds the lock
// on its own virtual transaction id from its first moment to its end,
// idle or not. So the transactions whose start is hidden are known, but
// not when they began; TakeWatermarked waits (up to wait, polling) for
// every one of them that was open at the reading to end, and only then
// takes the snapshot. Any transaction open at the snapshot then either
// has a start it can read or began after the reading, and the watermark
// above stays sound (CREATE INDEX CONCURRENTLY waits for old transactions
// the same way). When they are still open after wait it gives up with a
// *HiddenTransactionsError rather than record a watermark it cannot vouch
// for. waiting, when not nil, is told how many it waits for, once, before
// it starts waiting.
func TakeWatermarked(ctx context.Context, conn *pgx.Conn, wait time.Duration, waiting func(n int)) (*Snapshot, error) {
	var read time.Time
	var oldest *time.Time
	var hidden []string
	var role string
	// Both views in one statement; pg_locks is read after
	// statement_timestamp(), so a hidden transaction open at the reading
	// either is in it or has ended. A session of a role whose statistics
	// this role may read (pg_has_role ... USAGE, as PostgreSQL's own check)
	// is not hidden: its xact_start is in the min.
	err := conn.QueryRow(ctx, `SELECT statement_timestamp(), current_user::text,
		(SELECT min(xact_start) FROM pg_stat_activity
			WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()),
		coalesce((SELECT array_agg(l.virtualxid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'virtualxid' AND l.virtualxid = l.virtualtransaction AND l.granted
			AND a.pid <> pg_backend_pid() AND a.datname = current_database() AND a.xact_start IS NULL
			AND a.usesysid IS NOT NULL AND NOT pg_has_role(a.usesysid, 'USAGE')
			AND NOT pg_has_role('pg_read_all_stats', 'USAGE')), '{}')`).Scan(&read, &role, &oldest, &hidden)
	if err != nil {
		return nil, fmt.Errorf("take a snapshot: %w", Wrap(err))
	}
	if len(hidden) > 0 {
		if err := waitEnded(ctx, conn, hidden, wait, waiting, role); err != nil {
			return nil, err
		}
	}
	s, err := take(ctx, conn)
	if err != nil {
		return nil, err
	}
	s.Watermark = read
	if oldest != nil && oldest.Before(read) {
		s.Watermark = *oldest
	}
	s.Watermark = s.Watermark.Add(-WatermarkMargin)
	return s, nil
}

// waitPoll is how often waitEnded looks at pg_locks: a role without
// privileges has no way to be told when another's transaction ends.
const waitPoll = 50 * time.Millisecond

// waitEnded waits until none of the virtual transactions vxids is open.
func waitEnded(ctx context.Context, conn *pgx.Conn, vxids []string, wait time.Duration, waiting func(n int), role string) error {
	start := time.Now()
	told := false
	for {
		var open int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'virtualxid' AND granted AND virtualxid = ANY($1)`, vxids).Scan(&open)
		if err != nil {
			return fmt.Errorf("take a snapshot: %w", Wrap(err))
		}
		if open == 0 {
			return nil
		}
		if waited := time.Since(start); waited >= wait {
			return &HiddenTransactionsError{Role: role, Count: open, Waited: wait}
		}
		if !told && waiting != nil {
			waiting(open)
			told = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(waitPoll):
		}
	}
}

// Tx is the coordinator's transaction, which reads at the snapshot too.
func (s *Snapshot) Tx() pgx.Tx { return s.tx }

// Close ends the coordinator's transaction: the snapshot can no longer be
// joined (transactions already at it go on).
func (s *Snapshot) Close() {
	s.tx.Rollback(context.Background()) // read only: nothing to keep
}

// BeginAt starts a REPEATABLE READ, READ ONLY transaction on conn that
// sees the database as the snapshot id does.
func BeginAt(ctx context.Context, conn *pgx.Conn, id string) (pgx.Tx, error) {
	tx, err := BeginReadOnly(ctx, conn)
	if err != nil {
		return nil, err
	}
	// SET TRANSACTION takes no parameters; the id is the server's own
	// (hex digits and dashes), quoted as a literal all the same.
	if _, err := tx.Exec(ctx, `SET TRANSACTION SNAPSHOT `+quoteLiteral(id)); err != nil {
		tx.Rollback(context.Background())
		return nil, fmt.Errorf("join the snapshot: %w", Wrap(err))
	}
	return tx, nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
