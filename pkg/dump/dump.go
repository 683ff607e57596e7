// Package dump writes one resource type's rows as ndjson lines: read with
// one binary COPY in the caller's transaction (all of a table, a window of
// times, or a range of its heap blocks), each row made a line by store's
// row codec, converted to FHIR format first when asked. Rows that cannot be
// lines are reported (BadRowError) rather than written.
package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Options selects what Dump writes.
type Options struct {
	Type  string    // resource type, e.g. "Observation"
	Since time.Time // when not zero: only resources created after it (cts > Since), as Aidbox's $dump
	// ChangedFrom and ChangedUntil, when not zero, keep the resources
	// changed in [ChangedFrom, ChangedUntil] (ts), as HL7's _since/_until.
	ChangedFrom, ChangedUntil time.Time
	// Blocks, when not nil, keeps the rows stored in those heap blocks of
	// the table (a ctid range, which PostgreSQL 14+ scans directly): how
	// several connections share one table.
	Blocks *BlockRange
	FHIR   bool // FHIR format instead of Aidbox format
	// Filter, when not "", is an SQL condition on the row (its columns
	// id, ts, resource, ...) that keeps it: trusted text, built by the
	// caller from checked values (a compartment's, pkg/compartment),
	// never a user's text.
	Filter string
	// Elements, when not nil, are the top-level elements kept of each
	// resource (HL7's _elements; "value[x]" keeps a choice in either
	// format), with their primitive extensions (_status); id and meta
	// always stay, and meta gets the tag SUBSETTED. The caller adds the
	// elements the type requires, and names choices as value[x].
	Elements []string
	// ByID sorts the lines by id, in byte order (COLLATE "C"): the same
	// order on every server whatever its collation, as LC_ALL=C sort.
	ByID bool
	// Progress, when set, is called with the rows written so far, every
	// 4096 rows and at the end.
	Progress func(rows int64)
	// Bad, when set, is told of each row that cannot be written (a
	// resource that is not a JSON object, an empty id: a *BadRowError),
	// which is then left out; its error, if any, ends the dump. When not
	// set, the first such row ends the dump with its *BadRowError.
	Bad func(*BadRowError) error
}

// BadRowError is a stored row that cannot be a resource line.
type BadRowError struct {
	Type   string
	ID     string // "" for an empty id
	Txid   int64  // its version, to find a row without an id
	Reason string
}

func (e *BadRowError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("%s row of txid %d: %s", e.Type, e.Txid, e.Reason)
	}
	return fmt.Sprintf("resource %s/%s: %s", e.Type, e.ID, e.Reason)
}

// ParseSince reads a --since value: RFC 3339, or YYYY-MM-DD meaning UTC midnight.
func ParseSince(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if t, err = time.Parse(time.DateOnly, s); err != nil {
			return time.Time{}, fmt.Errorf("bad time %q: want RFC 3339 (2024-01-31T12:00:00Z) or a date (2024-01-31)", s)
		}
	}
	// PostgreSQL has no year 0 (its text form would be "1 BC"), and what
	// dump writes is years 0001-9999 in UTC.
	if t.Before(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)) || !t.Before(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)) {
		return time.Time{}, fmt.Errorf("bad time %q: outside the years 0001-9999 in UTC", s)
	}
	return t, nil
}

// Dump writes every resource of opts.Type to w as ndjson in Aidbox format,
// with resourceType, id and meta (versionId, lastUpdated, createdAt merged
// into the stored meta) put back, and returns how many it wrote.
//
// The rows come from one COPY ... TO STDOUT (FORMAT binary) and each line is
// spliced together from the row's bytes: the stored jsonb text is compacted
// and the columns inserted, with no JSON decoding. Memory does not depend on
// the table size. w should be buffered; Dump writes one line per call.
//
// It reads in the caller's transaction (pg.BeginReadOnly, or one that has
// set an exported snapshot), so that several dumps, on several connections,
// can see the database at one instant.
func Dump(ctx context.Context, tx pgx.Tx, opts Options, w io.Writer) (int64, error) {
	if err := store.ValidateType(opts.Type); err != nil {
		return 0, err
	}
	if err := store.CheckTable(ctx, tx, opts.Type); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	query := "SELECT id, txid, ts, cts, resource FROM " + store.Table(opts.Type) + opts.where()
	if opts.ByID {
		query += ` ORDER BY id COLLATE "C"`
	}
	sp := &splicer{w: w, progress: opts.Progress, typ: opts.Type, bad: opts.Bad, enc: store.NewEncoder(opts.Type, opts.FHIR), elements: opts.Elements}
	if opts.FHIR {
		sp.conv = fhirformat.New(fhirformat.ToFHIR)
	}
	rows := &pg.BinaryRows{Row: sp.row}
	_, err := tx.Conn().PgConn().CopyTo(ctx, rows, "COPY ("+query+") TO STDOUT (FORMAT binary)")
	if err == nil {
		err = rows.Close()
	}
	switch {
	case err == nil:
		if sp.progress != nil {
			sp.progress(sp.n)
		}
		return sp.n, nil
	case ctx.Err() != nil:
		return sp.n, ctx.Err()
	case pg.IsUndefinedTable(err):
		return 0, fmt.Errorf("no table for resource type %q", opts.Type)
	case sp.werr != nil:
		return sp.n, sp.werr // the writer failed (a closed pipe, a full disk): its own error
	case errors.As(err, new(*BadRowError)):
		var bad *BadRowError
		errors.As(err, &bad)
		return sp.n, bad
	default:
		return sp.n, fmt.Errorf("dump %s: %w", opts.Type, pg.Wrap(err))
	}
}

// BlockRange is the heap blocks [From, To) of a table; To < 0: to the end.
type BlockRange struct{ From, To int64 }

// where is the query's WHERE clause for the options, or "". COPY takes no
// parameters: the literals are formatted from parsed times and integers,
// never from the user's text.
func (o Options) where() string {
	var conds []string
	lit := func(t time.Time) string { return "'" + t.UTC().Format(time.RFC3339Nano) + "'::timestamptz" }
	if !o.Since.IsZero() {
		conds = append(conds, "cts > "+lit(o.Since))
	}
	if !o.ChangedFrom.IsZero() {
		conds = append(conds, "ts >= "+lit(o.ChangedFrom))
	}
	if !o.ChangedUntil.IsZero() {
		conds = append(conds, "ts <= "+lit(o.ChangedUntil))
	}
	if o.Filter != "" {
		conds = append(conds, o.Filter)
	}
	if b := o.Blocks; b != nil {
		if b.From > 0 {
			conds = append(conds, fmt.Sprintf("ctid >= '(%d,0)'::tid", b.From))
		}
		if b.To >= 0 {
			conds = append(conds, fmt.Sprintf("ctid < '(%d,0)'::tid", b.To))
		}
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// splicer turns binary rows (id, txid, ts, cts, resource) into ndjson
// lines with the store's row codec, converting them to FHIR format first
// when asked.
type splicer struct {
	w        io.Writer
	bad      func(*BadRowError) error
	progress func(rows int64)
	enc      *store.Encoder
	line     []byte // the line being built
	n        int64
	werr     error

	// FHIR output
	typ     string
	conv    *fhirformat.Converter // nil for Aidbox format
	fhirIn  []byte
	fhirOut []byte

	// _elements
	elements []string
	subset   []byte
	members  []ndjson.Member
}

func (s *splicer) row(f [][]byte) error {
	if len(f) != 5 || f[0] == nil || f[1] == nil || f[4] == nil {
		return errors.New("row with a NULL id, txid or resource")
	}
	txid, err := pg.Int8(f[1])
	if err != nil {
		return err
	}
	badRow := func(reason string) error {
		e := &BadRowError{Type: s.typ, ID: string(f[0]), Txid: txid, Reason: reason}
		if s.bad == nil {
			return e
		}
		return s.bad(e)
	}
	if len(f[0]) == 0 {
		return badRow("empty id")
	}
	raw, err := pg.JSONB(f[4])
	if err != nil {
		return err
	}
	if len(raw) == 0 || raw[0] != '{' { // jsonb's text has no leading space
		return badRow("resource is not a JSON object but " + jsonKind(raw))
	}
	if s.conv != nil {
		if s.fhirIn, err = ndjson.CompactObject(s.fhirIn[:0], raw, nil, nil); err == nil {
			s.fhirOut, err = s.conv.ResourceOfType(s.fhirOut[:0], s.fhirIn, s.typ)
		}
		if err != nil {
			return badRow(err.Error())
		}
		raw = s.fhirOut
	}
	if s.elements != nil {
		if s.conv == nil {
			if s.fhirIn, err = ndjson.CompactObject(s.fhirIn[:0], raw, nil, nil); err != nil {
				return badRow(err.Error())
			}
			raw = s.fhirIn
		}
		if s.subset, err = subset(s.subset[:0], raw, s.elements, &s.members); err != nil {
			return badRow(err.Error())
		}
		raw = s.subset
	}
	b, err := s.enc.AppendLine(s.line[:0], store.Row{ID: f[0], Txid: txid, TS: f[2], CTS: f[3], Resource: raw})
	if err != nil {
		var bad *store.BadResourceError
		if errors.As(err, &bad) {
			return badRow(bad.Error())
		}
		return err
	}
	b = append(b, '\n')
	s.line = b
	if _, err := s.w.Write(b); err != nil {
		s.werr = err
		return err
	}
	s.n++
	if s.progress != nil && s.n&4095 == 0 {
		s.progress(s.n)
	}
	return nil
}

// jsonKind names the kind of JSON value v is, for a message.
func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
