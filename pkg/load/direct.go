package load

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// errNotDirect means a direct COPY into an empty table failed on the
// server (a repeated id, JSON that PostgreSQL rejects...): the source is
// loaded again through the staging table, which handles or names it.
var errNotDirect = errors.New("direct COPY failed")

// directCandidate decides whether a typed load goes straight into its
// table: when the table is missing or empty. Then it prepares the table
// (taking the type's lock first, and looking again: another load may have
// filled it meanwhile) and returns the transaction's now().
func (l *Loader) directCandidate(ctx context.Context, tx pgx.Tx) (time.Time, bool, error) {
	t := l.Opts.Type
	if l.filled[t] {
		return time.Time{}, false, nil
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, store.Table(t)).Scan(&exists); err != nil {
		return time.Time{}, false, err
	}
	if exists {
		var empty bool
		if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+store.Table(t)+`)`).Scan(&empty); err != nil {
			return time.Time{}, false, err
		}
		if empty && l.Opts.PreserveMeta {
			// A direct COPY does not compare preserved txids with the
			// versions in history (a deletion): only the staged path does.
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NULL`, store.HistoryTable(t)).Scan(&empty); err != nil {
				return time.Time{}, false, err
			}
			if !empty {
				if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+store.HistoryTable(t)+`)`).Scan(&empty); err != nil {
					return time.Time{}, false, err
				}
			}
		}
		if !empty {
			l.markFilled(map[string]int64{t: 1})
			return time.Time{}, false, nil
		}
	}
	if err := l.Layout.Prepare(ctx, tx, t); err != nil {
		return time.Time{}, false, err
	}
	var empty bool
	var now time.Time
	if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+store.Table(t)+`), now()`).Scan(&empty, &now); err != nil {
		return time.Time{}, false, err
	}
	return now, empty, nil
}

// loadDirect is the fastest path, for a typed load into a table that is
// empty (or made) in this transaction, whose type lock it holds: one binary
// COPY of final-form rows straight into the table, with txids fetched in
// blocks on the layout connection. Whatever the server rejects (an id
// given twice, JSON it will not take) makes it give up with errNotDirect,
// and the source is loaded again the staged way.
func (l *Loader) loadDirect(ctx context.Context, tx pgx.Tx, src *source.Reader, enc *encoder, now time.Time) (Result, error) {
	enc.direct = &direct{
		now: now,
		txids: &txidBlocks{fetch: func(n int) ([]int64, error) {
			// Past every txid preserved so far first, so that none is drawn.
			if err := enc.advanceTxids(); err != nil {
				return nil, err
			}
			return l.Layout.NextTxids(ctx, n)
		}},
	}
	enc.known[l.Opts.Type] = true
	_, err := tx.Conn().PgConn().CopyFrom(ctx, enc,
		`COPY `+store.Table(l.Opts.Type)+` (id, txid, ts, cts, resource_type, status, resource) FROM STDIN (FORMAT binary)`)
	switch {
	case enc.err != nil:
		return Result{}, enc.err
	case err != nil && (ctx.Err() != nil || l.Conn.IsClosed()):
		return Result{}, l.dbError(ctx, err, enc)
	case err != nil:
		return Result{}, errNotDirect
	}
	if err := l.doneReading(ctx, src, enc); err != nil {
		return Result{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	l.markFilled(enc.counts)
	return enc.result(), nil
}

func (l *Loader) markFilled(counts map[string]int64) {
	if l.filled == nil {
		l.filled = map[string]bool{}
	}
	for t, n := range counts {
		if n > 0 {
			l.filled[t] = true
		}
	}
}

// direct encodes rows in the final form of a type's table:
// (id, txid, ts, cts, resource_type, status, resource).
type direct struct {
	now   time.Time // the transaction's now()
	txids *txidBlocks
}

func (d *direct) appendRow(b []byte, r resource) (out, tail []byte, err error) {
	// A preserved txid takes none from the sequence. One the blocks drawn
	// so far may hold (drawn for earlier lines, or by another session
	// before the sequence was moved past it) could be another row's: the
	// staged path draws only after every preserved txid is known.
	txid := r.meta.Txid
	if txid > 0 && txid <= d.txids.maxDrawn {
		return b, nil, errNotDirect
	}
	if txid == 0 {
		if txid, err = d.txids.next(); err != nil {
			return b, nil, err
		}
	}
	cts, ts := d.now, d.now
	if r.meta.CTS != nil {
		cts = *r.meta.CTS
	}
	if r.meta.TS != nil {
		ts = *r.meta.TS
	}
	b = pg.AppendTuple(b, 7)
	b = pg.AppendBytes(b, r.id)
	b = pg.AppendInt8(b, txid)
	b = pg.AppendTime(b, ts)
	b = pg.AppendTime(b, cts)
	b = pg.AppendBytes(b, []byte(r.typ))
	b = pg.AppendBytes(b, statusCreated)
	out, tail = appendResource(b, r.body, true)
	return out, tail, nil
}

var statusCreated = []byte("created")

// txidBlocks hands out values of transaction_id_seq, fetched in growing
// blocks (so a small load does not use up thousands) by fetch.
type txidBlocks struct {
	fetch    func(n int) ([]int64, error)
	have     []int64
	size     int
	maxDrawn int64 // the largest value fetched
}

func (t *txidBlocks) next() (int64, error) {
	if len(t.have) == 0 {
		t.size = min(max(t.size*4, 256), 65536)
		ids, err := t.fetch(t.size)
		if err != nil {
			return 0, err
		}
		t.have = ids
		for _, v := range ids {
			t.maxDrawn = max(t.maxDrawn, v)
		}
	}
	v := t.have[0]
	t.have = t.have[1:]
	return v, nil
}
