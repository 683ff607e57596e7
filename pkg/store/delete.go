package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// Aidbox deletes a resource by writing its current version to _history as
// it is, then a _history row of the same id with status 'deleted' (a new
// txid, ts = now()), and removing the main row. DeleteRequested writes
// deletes so; DeletedSince finds them.

// DeleteRequested deletes, the Aidbox way, the resources of type t named
// in requests, the quoted name of a table of deletion requests with the
// columns (n bigint, rtype text, id text, txid bigint, ts timestamptz): n
// orders the requests (of an id requested twice the last wins), rtype is
// the type, and txid and ts, when not NULL, are the deleted version's (an
// exact restore), else it gets a new txid and now(). The caller holds t's
// writer lock and has readied its tables (Layout.Prepare). It returns how
// many resources it deleted: an id not in t's table is not.
func DeleteRequested(ctx context.Context, tx pgx.Tx, t, requests string) (int64, error) {
	tag, err := tx.Exec(ctx, `WITH d AS (
			SELECT DISTINCT ON (id) id, txid, ts FROM `+requests+` WHERE rtype = $1 ORDER BY id, n DESC),
		gone AS (
			DELETE FROM `+Table(t)+` r USING d
			WHERE r.id = d.id RETURNING r.*, d.txid AS deleted_txid, d.ts AS deleted_ts),
		kept AS (
			INSERT INTO `+HistoryTable(t)+` (id, txid, ts, cts, resource_type, status, resource)
			SELECT id, txid, ts, cts, resource_type, status, resource FROM gone
			ON CONFLICT DO NOTHING)
		INSERT INTO `+HistoryTable(t)+` (id, txid, ts, cts, resource_type, status, resource)
		SELECT id, coalesce(deleted_txid, nextval('transaction_id_seq')), coalesce(deleted_ts, now()), cts, resource_type, 'deleted', resource FROM gone`, t)
	if err != nil {
		return 0, fmt.Errorf("delete %s: %w", t, pg.Wrap(err))
	}
	return tag.RowsAffected(), nil
}

// DeletedSince calls found, in id order, with each resource of type t
// deleted in [since, until] (ts; a zero until: no bound) and not there
// any more: its id and the txid and ts of its latest 'deleted' version. A
// resource deleted and created again is not deleted. filter, when not "",
// is an SQL condition on the deleted version's id and resource (trusted
// text, as dump.Options.Filter) that the deletion must meet. An error of
// found's ends the walk and is returned as it is.
func DeletedSince(ctx context.Context, tx pgx.Tx, t string, since, until time.Time, filter string, found func(id string, txid int64, at time.Time) error) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, HistoryTable(t)).Scan(&exists); err != nil || !exists {
		return pg.Wrap(err)
	}
	if until.IsZero() {
		until = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	if filter == "" {
		filter = "true"
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT ON (h.id) h.id, h.txid, h.ts FROM `+HistoryTable(t)+` h
		WHERE h.status = 'deleted' AND h.ts >= $1 AND h.ts <= $2 AND `+filter+`
		AND NOT EXISTS (SELECT FROM `+Table(t)+` r WHERE r.id = h.id)
		ORDER BY h.id, h.ts DESC, h.txid DESC`, since, until)
	if err != nil {
		return pg.Wrap(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var txid int64
		var at time.Time
		if err := rows.Scan(&id, &txid, &at); err != nil {
			return pg.Wrap(err)
		}
		if err := found(id, txid, at); err != nil {
			return err
		}
	}
	return pg.Wrap(rows.Err())
}
