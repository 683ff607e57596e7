package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Deletions is what a deletions source did, per type: resources deleted,
// and DELETEs of resources that were not there; and the bad lines it
// skipped (Options.MaxErrors), each with its source.
type Deletions struct {
	Deleted, Absent Counts
	Skipped         []BadLine
}

// DeleteSource applies a deletions source, in one transaction: ndjson
// lines, each a Bundle of type transaction whose entries are DELETE
// requests ("request": {"method": "DELETE", "url": "Patient/123"}), as HL7
// bulk exports list deleted resources. A resource is deleted the way
// Aidbox deletes one: its current row is copied into <type>_history, a
// _history row of status 'deleted' with a new txid is written, and the row
// is removed. A DELETE of a resource that is not there is counted, not an
// error. Its errors are *SourceError.
//
// Of the Options it heeds MaxLineSize; MaxErrors (a line that is not a
// Bundle of DELETEs is skipped, whole, up to that many; the next fails the
// source, as in a load); ExpectCount (a manifest's count: the source must
// hold that many DELETE entries, or that many Bundles, bad lines counted
// as one each; else it fails, nothing applied); and PreserveMeta: a
// Bundle's meta.versionId and meta.lastUpdated (fhirbulk export writes
// the deletion's txid and ts there) become the txid and ts of the
// 'deleted' rows of its entries, under the rules of a load's
// --preserve-meta (digits up to store.MaxPreservedTxid, a time no later than the
// server's clock and store.LastUpdatedSlack, a version newer than every one the
// database holds of that id: else a bad line), and transaction_id_seq is
// moved past them.
func (l *Loader) DeleteSource(ctx context.Context, spec string, opts source.Options) (Deletions, error) {
	name := source.Redact(spec)
	src, err := source.Open(ctx, spec, opts)
	if err != nil {
		if isContext(err) {
			return Deletions{}, err
		}
		var se *source.Error
		if errors.As(err, &se) {
			err = se.Err
		}
		return Deletions{}, &SourceError{Source: name, Err: err}
	}
	defer src.Close()
	d, err := l.deleteSource(ctx, src)
	if err != nil && !isContext(err) {
		err = &SourceError{Source: src.Name(), Err: err}
	}
	for i := range d.Skipped {
		d.Skipped[i].Source = src.Name()
	}
	return d, err
}

const deleteTable = "fhirbulk_deletions"

func (l *Loader) deleteSource(ctx context.Context, src io.Reader) (d Deletions, err error) {
	d = Deletions{Deleted: Counts{}, Absent: Counts{}}
	tx, err := l.Conn.Begin(ctx)
	if err != nil {
		return d, pg.Wrap(err)
	}
	defer tx.Rollback(context.Background()) // a no-op after Commit
	// n is the line of the request: a line found bad later (an older
	// version, with PreserveMeta) is taken out whole. txid and ts are the
	// preserved ones, or NULL.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+deleteTable+` (n bigint, rtype text, id text, txid bigint, ts timestamptz) ON COMMIT DELETE ROWS`); err != nil {
		return d, pg.Wrap(err)
	}
	dr := &deletionsReader{lines: ndjson.NewLineReaderMax(src, l.Opts.MaxLineSize), types: map[string]bool{},
		maxErrors: l.Opts.MaxErrors, say: l.Opts.say, preserve: l.Opts.PreserveMeta, parser: bulkdata.DeletedParser{ValidRef: validRef}}
	if dr.preserve {
		var now time.Time
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return d, pg.Wrap(err)
		}
		dr.notAfter = now.Add(store.LastUpdatedSlack)
	}
	// The requests stream into the table: memory stays flat whatever the
	// number of deletions.
	dr.copyIn.fill = dr.fillCopy
	defer dr.finish()
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, dr, `COPY `+deleteTable+` FROM STDIN (FORMAT binary)`); err != nil {
		if dr.err != nil {
			return d, dr.err
		}
		return d, pg.Wrap(err)
	}
	defer func() { d.Skipped = dr.bad }()
	if want := l.Opts.ExpectCount; want != nil && *want != dr.entries && *want != dr.bundles {
		holds := fmt.Sprintf("%d deletions", dr.entries)
		if dr.entries != dr.bundles {
			holds += fmt.Sprintf(" in %d Bundles", dr.bundles)
		}
		return d, fmt.Errorf("holds %s, the manifest says %d (cut short, or changed?)", holds, *want)
	}
	types := make([]string, 0, len(dr.types))
	for t := range dr.types {
		types = append(types, t)
	}
	store.LockOrder(types)
	// Every type's writer lock first (in the one order), so that what the
	// checks below see stays so until the deletes.
	exists := map[string]bool{}
	for _, t := range types {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, store.Table(t)).Scan(&ok); err != nil {
			return d, pg.Wrap(err)
		}
		if !ok {
			continue // nothing to delete: no table is made for it
		}
		exists[t] = true
		if err := l.Layout.Prepare(ctx, tx, t); err != nil {
			return d, err
		}
	}
	if dr.preserve {
		for _, t := range types {
			if exists[t] {
				if err := dr.skipOlder(ctx, tx, t); err != nil {
					return d, err
				}
			}
		}
		var top *int64
		if err := tx.QueryRow(ctx, `SELECT max(txid) FROM `+deleteTable).Scan(&top); err != nil {
			return d, pg.Wrap(err)
		}
		if top != nil {
			if _, err := l.Layout.AdvanceTxids(ctx, *top); err != nil {
				return d, err
			}
		}
	}
	for _, t := range types {
		var wanted int64
		if err := tx.QueryRow(ctx, `SELECT count(DISTINCT id) FROM `+deleteTable+` WHERE rtype = $1`, t).Scan(&wanted); err != nil {
			return d, pg.Wrap(err)
		}
		if !exists[t] {
			d.Absent[t] += wanted
			continue
		}
		deleted, err := store.DeleteRequested(ctx, tx, t, deleteTable)
		if err != nil {
			return d, err
		}
		d.Deleted[t] += deleted
		d.Absent[t] += wanted - deleted
	}
	if err := tx.Commit(ctx); err != nil {
		return d, pg.Wrap(err)
	}
	return d, nil
}

// skipOlder takes out, as bad lines, the lines (PreserveMeta) whose
// version of a resource of type t that is there is not newer than every
// version the database holds of it, current or in history: stored, the
// deletion would be older than the version it deletes. Past MaxErrors the
// first such line fails the source.
func (r *deletionsReader) skipOlder(ctx context.Context, tx pgx.Tx, t string) error {
	for {
		var n, txid, stored int64
		var id string
		err := tx.QueryRow(ctx, `SELECT d.n, d.id, d.txid, greatest(r.txid, (SELECT max(h.txid) FROM `+store.HistoryTable(t)+` h WHERE h.id = d.id))
			FROM `+deleteTable+` d JOIN `+store.Table(t)+` r ON r.id = d.id
			WHERE d.rtype = $1 AND d.txid IS NOT NULL
			AND (d.txid <= r.txid OR EXISTS (SELECT FROM `+store.HistoryTable(t)+` h WHERE h.id = d.id AND h.txid >= d.txid))
			ORDER BY d.n LIMIT 1`, t).Scan(&n, &id, &txid, &stored)
		if err == pgx.ErrNoRows {
			return nil
		}
		if err != nil {
			return pg.Wrap(err)
		}
		reason := r.say(&VersionError{Txid: txid, Stored: stored, What: t + "/" + ndjson.Clip(id), Deletion: true})
		if err := r.skip(n, reason); err != nil {
			return err
		}
		r.bad[len(r.bad)-1].ID, r.bad[len(r.bad)-1].Type = ndjson.Clip(id), t
		if _, err := tx.Exec(ctx, `DELETE FROM `+deleteTable+` WHERE n = $1`, n); err != nil {
			return pg.Wrap(err)
		}
	}
}

// deletionsReader is the binary COPY of a deletions source's requests:
// (line, type, id, txid, ts) tuples, read line by line. A line that is not
// a transaction Bundle of DELETE entries is a bad line: skipped whole
// (MaxErrors) or an error naming it (a deletions file must not be half
// applied).
type deletionsReader struct {
	copyIn
	lines *ndjson.LineReader
	types map[string]bool

	maxErrors int
	say       func(fact error) string // Options.say
	bad       []BadLine
	preserve  bool      // PreserveMeta: the Bundle's meta sets txid and ts
	notAfter  time.Time // the latest lastUpdated taken
	// What the source holds, for ExpectCount: DELETE entries and Bundles
	// (non-blank lines), a bad line counted as one of each.
	entries, bundles int64

	parser bulkdata.DeletedParser
}

// skip records line n as bad, or, past MaxErrors, fails with its error.
func (r *deletionsReader) skip(n int64, reason string) error {
	reason = ndjson.ClipQuoted(reason)
	if len(r.bad) >= r.maxErrors {
		if r.maxErrors > 0 {
			reason += " (" + r.say(&TooManyBadLinesError{Max: r.maxErrors}) + ")"
		}
		return &ndjson.LineError{Line: n, Reason: reason}
	}
	r.bad = append(r.bad, BadLine{Line: n, Reason: reason})
	return nil
}

// fillCopy encodes the requests of lines into r.out until it holds at
// least want bytes or the source ends.
func (r *deletionsReader) fillCopy(want int) error {
	for len(r.out) < want {
		line, err := r.lines.Next()
		var tooLong *ndjson.LineError
		if errors.As(err, &tooLong) {
			return &ndjson.LineError{Line: tooLong.Line, Reason: r.say(tooLong.Err)}
		}
		if err != nil && err != io.EOF {
			return err
		}
		if !ndjson.IsBlank(line) {
			n := r.lines.Line()
			r.bundles++
			dels, txid, ts, derr := r.deletionsOf(line)
			if derr != nil {
				r.entries++
				if err := r.skip(n, r.say(derr)); err != nil {
					return err
				}
			}
			for _, d := range dels {
				r.types[d.Type] = true
				r.entries++
				r.out = pg.AppendTuple(r.out, 5)
				r.out = pg.AppendInt8(r.out, n)
				r.out = pg.AppendBytes(r.out, []byte(d.Type))
				r.out = pg.AppendBytes(r.out, []byte(d.ID))
				if txid > 0 {
					r.out = pg.AppendInt8(r.out, txid)
				} else {
					r.out = pg.AppendNull(r.out)
				}
				if ts != nil {
					r.out = pg.AppendTime(r.out, *ts)
				} else {
					r.out = pg.AppendNull(r.out)
				}
			}
		}
		if err == io.EOF {
			r.end()
			return nil
		}
	}
	return nil
}

// deletionsOf reads one line's DELETE requests, and with PreserveMeta the
// txid (0: none) and time (nil: none) its meta gives them.
func (r *deletionsReader) deletionsOf(line []byte) ([]bulkdata.Deletion, int64, *time.Time, error) {
	d, err := r.parser.Parse(line)
	if err != nil {
		return nil, 0, nil, err
	}
	if !r.preserve {
		return d.Deletions, 0, nil, nil
	}
	var txid int64
	var ts *time.Time
	if d.VersionID != nil {
		if txid, err = store.ParseVersionID(d.VersionID); err != nil {
			return nil, 0, nil, err
		}
	}
	if d.LastUpdated != nil {
		if ts, err = store.PreservedInstant(d.LastUpdated, r.notAfter); err != nil {
			return nil, 0, nil, err
		}
	}
	return d.Deletions, txid, ts, nil
}

// validRef is whether a DELETE's type and id are a resource a load can
// hold.
func validRef(t, id string) bool {
	return store.ValidateType(t) == nil && len(id) <= MaxIDBytes
}
