package load

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// moveStaged moves the staged rows of each type into its table. Writers of
// one type take turns (store.LockType); a source of several types takes
// their locks in the one order every process uses.
func (l *Loader) moveStaged(ctx context.Context, tx pgx.Tx, enc *encoder) error {
	types := slices.Clone(enc.order)
	store.LockOrder(types)
	for _, t := range types {
		if err := l.Layout.Prepare(ctx, tx, t); err != nil {
			return err
		}
		if err := l.moveSkipping(ctx, tx, enc, t); err != nil {
			return err
		}
	}
	return nil
}

// moveSkipping moves type t's staged rows; with MaxErrors, a row the
// server will not take (JSON it refuses) is dropped from the stage as a bad
// line, and the move runs again, until it succeeds or the limit is passed.
func (l *Loader) moveSkipping(ctx context.Context, tx pgx.Tx, enc *encoder, t string) error {
	stage := l.stage.partition(t)
	for {
		err := l.move(ctx, tx, t, stage, enc.ids.unique(t), enc.counts[t])
		var le *ndjson.LineError
		if !errors.As(err, &le) || len(enc.bad) >= enc.maxErrors {
			if le != nil && enc.maxErrors > 0 {
				le.Reason += " (" + l.Opts.say(&TooManyBadLinesError{Max: enc.maxErrors}) + ")"
			}
			return err
		}
		var id string
		if err := tx.QueryRow(ctx, `DELETE FROM `+stage+` WHERE n = $1 RETURNING id`, le.Line).Scan(&id); err != nil {
			return err
		}
		enc.bad = append(enc.bad, BadLine{Line: le.Line, ID: id, Type: t, Reason: le.Reason})
		enc.counts[t]--
	}
}

// move puts the staged rows of type t into its table. unique says the
// source certainly has no repeated id of this type; staged is how many rows.
func (l *Loader) move(ctx context.Context, tx pgx.Tx, t, stage string, unique bool, staged int64) error {
	if l.Opts.PreserveMeta {
		if err := checkVersions(ctx, tx, t, stage, l.Opts.say); err != nil {
			return err
		}
	}
	var err error
	if unique {
		// The fast path: every id is new. It fails at the first one that is
		// not. One round trip (a small source is mostly round trips): the
		// statements go as one simple query, so the type is a literal.
		_, err = tx.Exec(ctx, `SAVEPOINT fhirbulk_fast;
			INSERT INTO `+store.Table(t)+` (id, txid, ts, cts, resource_type, status, resource)
			SELECT id, coalesce(txid, nextval('transaction_id_seq')), coalesce(ts, now()), coalesce(cts, now()), `+quoteLiteral(t)+`, 'created', resource::jsonb
			FROM `+stage+`;
			RELEASE SAVEPOINT fhirbulk_fast`)
		if err == nil {
			return nil
		}
		if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT fhirbulk_fast`); rerr != nil {
			return sqlError(err)
		}
	} else if _, err := tx.Exec(ctx, `SAVEPOINT fhirbulk_fast`); err != nil {
		return sqlError(err)
	}
	if !unique || pgCode(err) == "23505" {
		err = l.upsert(ctx, tx, t, stage, unique, staged)
		if err == nil {
			_, err = tx.Exec(ctx, `RELEASE SAVEPOINT fhirbulk_fast`)
			return sqlError(err)
		}
		if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT fhirbulk_fast`); rerr != nil {
			return sqlError(err)
		}
	}
	if isJSONError(err) {
		return badJSON(ctx, tx, stage, err)
	}
	return sqlError(err)
}

// upsert is the slow path of move: the last line of each id wins; its old
// version goes to history when asked; existing ids are updated (their cts
// kept unless the line gives createdAt), new ones inserted.
func (l *Loader) upsert(ctx context.Context, tx pgx.Tx, t, stage string, unique bool, staged int64) error {
	table, history := store.Table(t), store.HistoryTable(t)
	latest := stage
	if !unique {
		latest = `(SELECT s.id, s.n, s.cts, s.txid, s.ts, s.resource FROM ` + stage + ` s
			WHERE s.n IN (SELECT max(n) FROM ` + stage + ` GROUP BY id))`
	}
	exec := func(sql string, args ...any) (int64, error) {
		tag, err := tx.Exec(ctx, sql, args...)
		return tag.RowsAffected(), err
	}
	// Hash joins and aggregates over every staged id spill to disk at the
	// default 4 MB; JIT compilation buys nothing for these writes.
	if _, err := exec(`SET LOCAL work_mem = '128MB'`); err != nil {
		return err
	}
	if _, err := exec(`SET LOCAL jit = off`); err != nil {
		return err
	}
	if l.Opts.History {
		if _, err := exec(`INSERT INTO ` + history + ` (id, txid, ts, cts, resource_type, status, resource)
			SELECT t.id, t.txid, t.ts, t.cts, t.resource_type, t.status, t.resource
			FROM ` + table + ` t WHERE t.id IN (SELECT id FROM ` + stage + `)
			ON CONFLICT DO NOTHING`); err != nil {
			return err
		}
	}
	updated, err := exec(`UPDATE `+table+` t SET txid = coalesce(d.txid, nextval('transaction_id_seq')), ts = coalesce(d.ts, now()), cts = coalesce(d.cts, t.cts),
			resource_type = $1, status = 'updated', resource = d.resource::jsonb
			FROM `+latest+` d WHERE t.id = d.id`, t)
	if err != nil || (unique && updated == staged) {
		return err // or every id existed: nothing left to insert
	}
	// ON CONFLICT: an id that another session inserted since the UPDATE.
	_, err = exec(`INSERT INTO `+table+` (id, txid, ts, cts, resource_type, status, resource)
			SELECT d.id, coalesce(d.txid, nextval('transaction_id_seq')), coalesce(d.ts, now()), coalesce(d.cts, now()), $1, 'created', d.resource::jsonb
			FROM `+latest+` d WHERE NOT EXISTS (SELECT 1 FROM `+table+` t WHERE t.id = d.id)
			ON CONFLICT (id) DO UPDATE SET txid = excluded.txid, ts = excluded.ts, cts = excluded.cts,
				resource_type = excluded.resource_type, status = 'updated', resource = excluded.resource`, t)
	return err
}

// checkVersions (--preserve-meta) compares each staged line's txid with
// the versions the database holds of its id. It fails the first line whose
// txid is lower than one of them, current or in history: stored, it would
// make the current version older than its history (an update reverted: an
// incremental export loaded before the one it follows), or bring back a
// deleted resource under an older version. It fails the first line whose
// txid is the current version's but whose content is not: a version never
// changes. And it takes out of the stage the lines that are the
// current version as stored (the same resource, and lastUpdated and
// createdAt when given): loading the same export again changes nothing,
// not even the status, nor adds the current version to history.
//
// The staged text is cast to jsonb only for a line of the current
// version's txid; a line PostgreSQL will not take is then found as by move.
func checkVersions(ctx context.Context, tx pgx.Tx, t, stage string, say func(error) string) error {
	if _, err := tx.Exec(ctx, `SAVEPOINT fhirbulk_versions`); err != nil {
		return sqlError(err)
	}
	table := store.Table(t)
	same := `CASE WHEN s.txid = r.txid THEN s.resource::jsonb = r.resource
		AND (s.ts IS NULL OR s.ts = r.ts) AND (s.cts IS NULL OR s.cts = r.cts) END`
	var n, txid, stored int64
	var id string
	var older bool
	err := tx.QueryRow(ctx, `SELECT n, id, txid, stored, older FROM (
			SELECT s.n, s.id, s.txid, r.txid AS stored, s.txid < r.txid AS older FROM `+stage+` s JOIN `+table+` r ON r.id = s.id
			WHERE s.txid < r.txid OR NOT (`+same+`)
			UNION ALL
			SELECT s.n, s.id, s.txid, h.txid, true FROM `+stage+` s JOIN `+store.HistoryTable(t)+` h ON h.id = s.id WHERE s.txid < h.txid
		) o ORDER BY n, stored DESC LIMIT 1`).Scan(&n, &id, &txid, &stored, &older)
	if err == pgx.ErrNoRows {
		_, err = tx.Exec(ctx, `DELETE FROM `+stage+` s USING `+table+` r WHERE r.id = s.id AND s.txid = r.txid AND `+same)
		if err == nil {
			_, err = tx.Exec(ctx, `RELEASE SAVEPOINT fhirbulk_versions`)
			return sqlError(err)
		}
	}
	if err != nil {
		if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT fhirbulk_versions`); rerr != nil || !isJSONError(err) {
			return sqlError(err)
		}
		return badJSON(ctx, tx, stage, err)
	}
	if _, err := tx.Exec(ctx, `RELEASE SAVEPOINT fhirbulk_versions`); err != nil {
		return sqlError(err)
	}
	what := t + "/" + ndjson.Clip(id)
	return &ndjson.LineError{Line: n, Reason: say(&VersionError{Txid: txid, Stored: stored, What: what, Older: older})}
}

// VersionError is a line whose meta.versionId (Options.PreserveMeta) the
// database refuses: older than the version Stored of What (Type/id), or
// that version itself with other content (not Older); for a deletion, not
// newer than Stored. Stored, it would make the history go backwards.
type VersionError struct {
	Txid, Stored int64
	What         string
	Older        bool
	Deletion     bool
}

func (e *VersionError) Error() string {
	switch {
	case e.Deletion:
		return fmt.Sprintf("meta.versionId %d is not newer than version %d of %s in the database: the deletion would make the history go backwards", e.Txid, e.Stored, e.What)
	case e.Older:
		return fmt.Sprintf("meta.versionId %d is older than version %d of %s in the database: stored, it would make the history go backwards", e.Txid, e.Stored, e.What)
	}
	return fmt.Sprintf("meta.versionId %d is the version of %s in the database, which differs from this line (its resource, lastUpdated or createdAt): a version never changes", e.Txid, e.What)
}

// isJSONError reports the errors PostgreSQL gives for text it will not
// take as jsonb (bad syntax, \u0000, nesting too deep, a number too large
// for numeric).
func isJSONError(err error) bool {
	switch pgCode(err) {
	case "22P02", "22P05", "22023", "54001", "22003":
		return true
	}
	return false
}

// badJSON finds the first staged line PostgreSQL will not take as jsonb
// (the byte scanner checks structure, not every token, so this is where a
// line like {"id":"x","a":tru} is caught): it halves the range of line
// numbers, each probe casting the rows of a range in one statement, in a
// savepoint. The transaction must be usable (rolled back to before the
// failure).
func badJSON(ctx context.Context, tx pgx.Tx, stage string, cause error) error {
	var lo, hi *int64
	if err := tx.QueryRow(ctx, `SELECT min(n), max(n) FROM `+stage).Scan(&lo, &hi); err != nil || lo == nil {
		return sqlError(cause)
	}
	var msg string
	probe := func(a, b int64) (bad bool, err error) {
		if _, err := tx.Exec(ctx, `SAVEPOINT fhirbulk_probe`); err != nil {
			return false, err
		}
		_, err = tx.Exec(ctx, `SELECT count(*) FROM `+stage+` WHERE n BETWEEN $1 AND $2 AND resource::jsonb IS NOT NULL`, a, b)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && isJSONError(err) {
			msg = ndjson.ClipQuoted(pgErr.Message)
			if pgErr.Detail != "" {
				msg += " (" + ndjson.ClipQuoted(pgErr.Detail) + ")"
			}
			_, err = tx.Exec(ctx, `ROLLBACK TO SAVEPOINT fhirbulk_probe`)
			return true, err
		}
		if err != nil {
			return false, err
		}
		_, err = tx.Exec(ctx, `RELEASE SAVEPOINT fhirbulk_probe`)
		return false, err
	}
	a, b := *lo, *hi
	if bad, err := probe(a, b); err != nil || !bad {
		return sqlError(cause)
	}
	for a < b {
		mid := a + (b-a)/2
		bad, err := probe(a, mid)
		if err != nil {
			return sqlError(err)
		}
		if bad {
			b = mid
		} else {
			a = mid + 1
		}
	}
	probe(a, a) // for the message of that very line
	return &ndjson.LineError{Line: a, Reason: "invalid JSON: " + msg}
}
