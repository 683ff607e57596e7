package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Deletions is what a deletions source did, per type: resources deleted,
// and DELETEs of resources that were not there.
type Deletions struct {
	Deleted, Absent Counts
}

// DeleteSource applies a deletions source, in one transaction: ndjson
// lines, each a Bundle of type transaction whose entries are DELETE
// requests ("request": {"method": "DELETE", "url": "Patient/123"}), as HL7
// bulk exports list deleted resources. A resource is deleted the way
// Aidbox deletes one: its current row is copied into <type>_history, a
// _history row of status 'deleted' with a new txid is written, and the row
// is removed. A DELETE of a resource that is not there is counted, not an
// error. Its errors are *SourceError.
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
	return d, err
}

const deleteTable = "fhirbulk_deletes"

func (l *Loader) deleteSource(ctx context.Context, src io.Reader) (Deletions, error) {
	d := Deletions{Deleted: Counts{}, Absent: Counts{}}
	tx, err := l.Conn.Begin(ctx)
	if err != nil {
		return d, pg.Wrap(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+deleteTable+` (rtype text, id text) ON COMMIT DELETE ROWS`); err != nil {
		return d, pg.Wrap(err)
	}
	// The requests stream into the table: memory stays flat whatever the
	// number of deletions.
	dr := &deletionsReader{lines: ndjson.NewLineReaderMax(src, l.Opts.MaxLineSize), types: map[string]bool{}}
	cs := &copySource{r: dr}
	defer cs.finish()
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, cs, `COPY `+deleteTable+` FROM STDIN (FORMAT binary)`); err != nil {
		if dr.err != nil {
			return d, dr.err
		}
		return d, pg.Wrap(err)
	}
	types := make([]string, 0, len(dr.types))
	for t := range dr.types {
		types = append(types, t)
	}
	pg.LockOrder(types)
	for _, t := range types {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pg.Table(t)).Scan(&exists); err != nil {
			return d, pg.Wrap(err)
		}
		var wanted int64
		if err := tx.QueryRow(ctx, `SELECT count(DISTINCT id) FROM `+deleteTable+` WHERE rtype = $1`, t).Scan(&wanted); err != nil {
			return d, pg.Wrap(err)
		}
		if !exists {
			d.Absent[t] += wanted
			continue
		}
		if err := l.Layout.Prepare(ctx, tx, t); err != nil {
			return d, err
		}
		// The current version to history as it is, then the 'deleted'
		// version, then the row goes.
		tag, err := tx.Exec(ctx, `WITH gone AS (
				DELETE FROM `+pg.Table(t)+` r USING (SELECT DISTINCT id FROM `+deleteTable+` WHERE rtype = $1) d
				WHERE r.id = d.id RETURNING r.*),
			kept AS (
				INSERT INTO `+pg.HistoryTable(t)+` (id, txid, ts, cts, resource_type, status, resource)
				SELECT id, txid, ts, cts, resource_type, status, resource FROM gone
				ON CONFLICT DO NOTHING)
			INSERT INTO `+pg.HistoryTable(t)+` (id, txid, ts, cts, resource_type, status, resource)
			SELECT id, nextval('transaction_id_seq'), now(), cts, resource_type, 'deleted', resource FROM gone`, t)
		if err != nil {
			return d, fmt.Errorf("delete %s: %w", t, pg.Wrap(err))
		}
		d.Deleted[t] += tag.RowsAffected()
		d.Absent[t] += wanted - tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return d, pg.Wrap(err)
	}
	return d, nil
}

// deletionsReader is the binary COPY of a deletions source's requests:
// (type, id) tuples, read line by line. A line that is not a transaction
// Bundle of DELETE entries is an error naming it (a deletions file must not
// be half applied).
type deletionsReader struct {
	lines   *ndjson.LineReader
	types   map[string]bool
	out     []byte
	pos     int
	started bool
	done    bool
	err     error

	compact []byte
	spans   [1]ndjson.Span
	ids     map[string][]string
}

func (r *deletionsReader) Read(p []byte) (int, error) {
	for r.pos == len(r.out) {
		if r.done {
			return 0, io.EOF
		}
		r.out, r.pos = r.out[:0], 0
		if !r.started {
			r.out = pg.AppendCopyHeader(r.out)
			r.started = true
		}
		if err := r.fill(len(p)); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.out[r.pos:])
	r.pos += n
	return n, nil
}

func (r *deletionsReader) fill(want int) error {
	if r.ids == nil {
		r.ids = map[string][]string{}
	}
	for len(r.out) < want {
		line, err := r.lines.Next()
		if err != nil && err != io.EOF {
			return err
		}
		if !ndjson.IsBlank(line) {
			clear(r.ids)
			if derr := deletionsOf(line, &r.compact, r.spans[:], r.ids); derr != nil {
				return &ndjson.LineError{Line: r.lines.Line(), Reason: derr.Error()}
			}
			for t, ids := range r.ids {
				r.types[t] = true
				for _, id := range ids {
					r.out = pg.AppendTuple(r.out, 2)
					r.out = pg.AppendBytes(r.out, []byte(t))
					r.out = pg.AppendBytes(r.out, []byte(id))
				}
			}
		}
		if err == io.EOF {
			r.out = pg.AppendCopyTrailer(r.out)
			r.done = true
			return nil
		}
	}
	return nil
}

func deletionsOf(line []byte, compact *[]byte, spans []ndjson.Span, ids map[string][]string) error {
	var err error
	*compact, err = ndjson.CompactObject((*compact)[:0], line, []string{"entry"}, spans)
	if err != nil {
		return errors.New(ndjson.LineReason(err))
	}
	if !spans[0].Found() {
		return errors.New(`no "entry": want a Bundle of DELETE requests`)
	}
	entries := (*compact)[spans[0].Start+len(`"entry":`) : spans[0].End]
	var bad error
	eerr := ndjson.Elements(entries, func(entry []byte) {
		if bad != nil {
			return
		}
		var method, url []byte
		ndjson.Members(entry, func(k, v []byte) bool { //nolint:errcheck // a malformed entry has no request: said below
			if string(k) == "request" {
				ndjson.Members(v, func(k, v []byte) bool { //nolint:errcheck
					switch string(k) {
					case "method":
						method, _ = ndjson.Unquote(v)
					case "url":
						url, _ = ndjson.Unquote(v)
					}
					return true
				})
			}
			return true
		})
		if !strings.EqualFold(string(method), "DELETE") {
			bad = fmt.Errorf("an entry that is not a DELETE request (method %q)", method)
			return
		}
		t, id, ok := typeAndID(string(url))
		if !ok {
			bad = fmt.Errorf("DELETE of %q: want TYPE/ID", url)
			return
		}
		ids[t] = append(ids[t], id)
	})
	if eerr != nil {
		return errors.New(`"entry" is not an array`)
	}
	return bad
}

// typeAndID reads a DELETE request's url: "Patient/123", or an absolute
// URL ending in it ("https://server/fhir/Patient/123"); a query is not a
// resource.
func typeAndID(url string) (string, string, bool) {
	if strings.ContainsAny(url, "?#") {
		return "", "", false
	}
	parts := strings.Split(strings.TrimSuffix(url, "/"), "/")
	if len(parts) < 2 {
		return "", "", false
	}
	t, id := parts[len(parts)-2], parts[len(parts)-1]
	if pg.ValidateType(t) != nil || id == "" || len(id) > MaxIDBytes {
		return "", "", false
	}
	return t, id, true
}
