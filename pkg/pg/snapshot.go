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
// conn, which stays open (and the connection busy) until Close.
//
// The watermark. A writer stamps ts with now(), the start of its
// transaction, and its rows become visible when it commits. A transaction
// that began before the snapshot and commits after it is not in this
// snapshot, yet its ts is earlier than the snapshot's time: an export
// after this one that looked only at ts > At would miss it. So, before the
// snapshot is taken, Take reads the start of the oldest transaction open
// on this database (pg_stat_activity's xact_start) and the time of that
// reading: a transaction open when the snapshot is taken either was open
// at the reading (and started no earlier than the oldest) or began after
// it. The watermark is the earlier of the two, less WatermarkMargin, and
// the next export reads ts >= Watermark: every change not in this
// snapshot is in the next export. Rows may appear in both; a load is an
// upsert, so that is harmless. This assumes writers set ts to now() (as
// Aidbox does) on this one server's clock, and no prepared (two-phase)
// transaction is pending.
func Take(ctx context.Context, conn *pgx.Conn) (*Snapshot, error) {
	var read time.Time
	var oldest *time.Time
	err := conn.QueryRow(ctx, `SELECT statement_timestamp(), min(xact_start) FROM pg_stat_activity
		WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()`).Scan(&read, &oldest)
	if err != nil {
		return nil, fmt.Errorf("take a snapshot: %w", Wrap(err))
	}
	tx, err := BeginReadOnly(ctx, conn)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{tx: tx}
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot(), clock_timestamp()`).Scan(&s.ID, &s.At); err != nil {
		tx.Rollback(context.Background()) //nolint:errcheck // the error above is the one to report
		return nil, fmt.Errorf("take a snapshot: %w", Wrap(err))
	}
	s.Watermark = read
	if oldest != nil && oldest.Before(read) {
		s.Watermark = *oldest
	}
	s.Watermark = s.Watermark.Add(-WatermarkMargin)
	return s, nil
}

// Tx is the coordinator's transaction, which reads at the snapshot too.
func (s *Snapshot) Tx() pgx.Tx { return s.tx }

// Close ends the coordinator's transaction: the snapshot can no longer be
// joined (transactions already at it go on).
func (s *Snapshot) Close() {
	s.tx.Rollback(context.Background()) //nolint:errcheck // read only: nothing to keep
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
		tx.Rollback(context.Background()) //nolint:errcheck
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
