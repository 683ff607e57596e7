// Package load upserts ndjson resources into the Aidbox storage layout, the
// way Aidbox's $load does: no validation, a raw upsert by id, for speed.
//
// One source is one transaction, tables included: a type's tables are made
// inside it when missing (store.Layout), so a load that fails leaves nothing.
//
// A typed load into a missing or empty table is one binary COPY of rows in
// their final form straight into it. Otherwise the lines stream through a
// binary COPY into the connection's staging table, partitioned by resource
// type (a line of a new type ends the COPY, its partition is made, the next
// COPY goes on), so a source of mixed types is routed without being held in
// memory. Then, per type, in the one order every process uses, the load
// takes the type's writer lock (store.LockType) and moves the rows with one
// INSERT ... SELECT. That plain INSERT is the fast path; when it meets an id
// that exists (or one the source repeats) it is rolled back to a savepoint
// and the upsert path runs instead: deduplicate (the last line wins), copy
// old versions to history when asked, UPDATE the existing ids, INSERT the
// new ones.
//
// Staging the resource as text and casting it once in the INSERT measured
// faster than COPYing it as jsonb, and keeps the line number beside every
// row for the error message when PostgreSQL rejects the JSON.
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Options are the load flags.
type Options struct {
	Type       string // every line is of this type; "" routes by resourceType
	History    bool   // copy replaced versions to <table>_history
	StripNulls bool   // drop object members whose value is null, at any depth
	Merge      *Merge // shallow-merged into every resource (nil: none)
	FHIR       bool   // input in FHIR format, converted to Aidbox format on the way in
	// PreserveMeta: meta.versionId sets txid and meta.lastUpdated sets ts
	// (each when present and valid), and transaction_id_seq is moved past
	// the largest txid stored: an export restored exactly.
	PreserveMeta bool
	// MaxErrors is how many bad lines a source may skip (0: none, the
	// first fails it); the next one fails it, as ever, nothing committed.
	MaxErrors int
	// ExpectCount, when set, is how many resources the source must hold (a
	// manifest's count): another number fails it, nothing committed.
	ExpectCount *int64
	// MaxLineSize bounds a line's length in bytes (0: no bound); a longer
	// line is an error naming it.
	MaxLineSize int
	// FormatCheck is how many lines of each source, at the most, are
	// checked for the other format (FHIR lines in an Aidbox-format load, or
	// the reverse): the first such line fails the source with a
	// *fhirformat.FormatError (0: no check). The check ends at the first
	// line that shows the right format.
	FormatCheck int64
	// OnlyKnownTypes refuses a type that is neither an R4 type nor has a
	// table: a line of such a resourceType is a bad line (a typo such as
	// Patinet would otherwise make a table of its own). It does not apply
	// to Type (the caller checks it) nor to a dry run (which knows no
	// tables).
	OnlyKnownTypes bool
	// FormatHint says what to do about a source found in format found
	// (nil: load's flags, "use --fhir" or "drop --fhir").
	FormatHint func(found fhirformat.Format) string
}

func loadFormatHint(found fhirformat.Format) string {
	if found == fhirformat.FHIR {
		return "use --fhir"
	}
	return "drop --fhir"
}

// Merge is a parsed --merge object.
type Merge struct {
	members []byte   // `,"k":v,...` as appended after a resource's members
	keys    []string // its top-level keys other than meta
	meta    []byte   // its meta value, when it sets meta
}

// ParseMerge reads a --merge value: a JSON object that may not set id or
// resourceType.
func ParseMerge(s string) (*Merge, error) {
	if !json.Valid([]byte(s)) {
		return nil, errors.New("not valid JSON")
	}
	var keys []string
	compact, err := ndjson.CompactObject(nil, []byte(s), nil, nil)
	if err != nil {
		return nil, errors.New("not a JSON object")
	}
	if err := storableEscapes(compact); err != nil {
		return nil, err
	}
	m := &Merge{}
	seen := map[string]bool{}
	var bad error
	err = ndjson.Members(compact, func(key, value []byte) bool {
		text, ok := ndjson.KeyText(key) // CompactObject made it canonical; this is what it spells
		if !ok {
			bad = fmt.Errorf("key %q is not valid text", key)
			return false
		}
		k := string(text)
		if seen[k] {
			bad = fmt.Errorf("key %q given twice", k)
			return false
		}
		seen[k] = true
		switch k {
		case "id", "resourceType":
			bad = fmt.Errorf("cannot set %q", k)
			return false
		case "meta":
			m.meta = append([]byte{}, value...)
			return true
		}
		keys = append(keys, k)
		m.members = ndjson.AppendMember(append(m.members, ','), key, value)
		return true
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, errors.New("not a JSON object")
	}
	m.keys = keys
	return m, nil
}

// storableEscapes refuses the \u escapes of JSON text j that PostgreSQL's
// jsonb will not store: \u0000, and a surrogate that is not half of a
// pair (a line holding them is a bad line; in --merge, every line would
// be).
func storableEscapes(j []byte) error {
	if hasNULEscape(j) {
		return errors.New(`it holds \u0000, which PostgreSQL's jsonb cannot store`)
	}
	lone := errors.New(`it holds a lone surrogate escape (\ud800-\udfff not in a pair), which PostgreSQL's jsonb refuses`)
	high := false // the escape before was a high surrogate: a low one must follow
	for i := 0; i < len(j); i++ {
		if j[i] != '\\' {
			if high {
				return lone
			}
			continue
		}
		i++ // the escaped character
		if i+4 < len(j) && j[i] == 'u' {
			v, err := strconv.ParseUint(string(j[i+1:i+5]), 16, 16)
			if err != nil {
				return errors.New("not valid JSON")
			}
			i += 4
			isHigh, isLow := v >= 0xd800 && v < 0xdc00, v >= 0xdc00 && v < 0xe000
			if high != isLow {
				return lone
			}
			high = isHigh
			continue
		}
		if high {
			return lone
		}
	}
	if high {
		return lone
	}
	return nil
}

// Counts are resources loaded per type (lines, so a repeated id counts twice).
type Counts map[string]int64

// Add adds other into c.
func (c Counts) Add(other Counts) {
	for t, n := range other {
		c[t] += n
	}
}

// JSON renders counts as one JSON object with sorted keys, e.g.
// {"CarePlan":356,"Observation":20382}.
func (c Counts) JSON() string {
	types := make([]string, 0, len(c))
	for t := range c {
		types = append(types, t)
	}
	sort.Strings(types)
	var b strings.Builder
	b.WriteByte('{')
	for i, t := range types {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%d", t, c[t])
	}
	b.WriteByte('}')
	return b.String()
}

// Total is the sum over all types.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Loader loads sources over one connection. It keeps a temporary staging
// table on that connection from one source to the next: a table made and
// dropped per source grew the catalog by kilobytes per source.
type Loader struct {
	Conn *pgx.Conn
	// Layout creates a type's tables (inside the load's transaction) and
	// takes its writer lock; it hands out txids on a connection of its own.
	Layout *store.Layout
	Opts   Options
	// Progress, when set, is told how each source goes: as lines are read
	// (every few thousand), when the server stores what was read, and when
	// the source is committed or rolled back.
	Progress func(Event)
	// DryRun reads the sources and applies every rule a load applies to
	// their lines (see dryRun), without a database: Conn and Layout are
	// not used, nothing is stored, and the counts are those a load would
	// store.
	DryRun bool

	stage stage
	spare *encoder // the last source's encoder, whose buffers the next one reuses
	// filled are types whose tables had rows (found, or committed by this
	// Loader): a direct COPY into them is not tried again. Should one be
	// emptied meanwhile, its loads only take the staged path.
	filled map[string]bool
}

// stage is the session's staging table: fhirbulk_stage, partitioned by
// resource type, its rows deleted at every commit.
type stage struct {
	conn       *pgx.Conn         // the connection it lives on (nil: not made yet)
	partitions map[string]string // committed partitions by type
	fresh      map[string]string // partitions made in the running transaction
	made       int               // partitions made so far, for their names
	dirty      bool              // a transaction that staged rows rolled back
}

// restartTries bounds how often a source whose HTTP body broke off (and
// could not be resumed) is loaded again from the start.
const restartTries = 3

// errNotDirect means a direct COPY into an empty table failed on the
// server (a repeated id, JSON that PostgreSQL rejects...): the source is
// loaded again through the staging table, which handles or names it.
var errNotDirect = errors.New("direct COPY failed")

// Phase is where the load of a source is.
type Phase int

// The phases of a source, in order; it ends Done or Failed.
const (
	Reading Phase = iota // lines are read and staged
	Storing              // all is read; the server stores it
	Done                 // committed
	Failed               // nothing of it committed
)

// Event is one report of a source's progress.
type Event struct {
	Source    string // as it may be shown (redacted)
	Phase     Phase
	Lines     int64  // lines read so far
	BytesRead int64  // of the raw (maybe compressed) stream
	Size      int64  // of the raw stream, -1 when unknown
	Counts    Counts // Done: resources stored per type
	Skipped   int    // Done: bad lines skipped
}

// SourceError is a source that failed: its name as it may be shown
// (redacted), and why. Nothing of it was committed.
type SourceError struct {
	Source string
	Err    error
}

func (e *SourceError) Error() string { return "load " + e.Source + ": " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// PartialError is a run of sources (LoadAll) that stopped at a failed one,
// or was interrupted, after others were committed.
type PartialError struct {
	Committed []string // the sources committed before, as shown
	Counts    []int64  // the resources each of them stored
	NotLoaded []string // the failed source and those after it, as shown
	Err       error    // the failure, a *SourceError, or the context's error
}

func (e *PartialError) Error() string {
	if isContext(e.Err) {
		var b strings.Builder
		b.WriteString("interrupted: ")
		for i, s := range e.Committed {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s committed (%d resources)", s, e.Counts[i])
		}
		b.WriteString("; not loaded: " + strings.Join(e.NotLoaded, ", "))
		return b.String()
	}
	return e.Err.Error() + "; loaded and committed before it: " + strings.Join(e.Committed, ", ")
}
func (e *PartialError) Unwrap() error { return e.Err }

// Interrupted reports whether the run was interrupted (not failed).
func (e *PartialError) Interrupted() bool { return isContext(e.Err) }

// LoadAll loads the sources one after another, each in a transaction of its
// own, and stops at the first that fails; the sources after it are not
// read. Before the first is loaded every source is checked (source.Check:
// a file that is missing, a URL that does not parse), so such a mistake
// commits nothing. When some were committed before a failure or an
// interruption (not in a dry run), the error is a *PartialError that names
// them.
func (l *Loader) LoadAll(ctx context.Context, specs []string, opts source.Options) (Result, error) {
	for _, spec := range specs {
		if err := source.Check(spec, opts); err != nil {
			var se *source.Error
			if errors.As(err, &se) {
				err = &SourceError{Source: se.Source, Err: se.Err}
			}
			return Result{Counts: Counts{}}, err
		}
	}
	total := Result{Counts: Counts{}}
	var done []string
	var counts []int64
	for i, spec := range specs {
		res, err := l.LoadSource(ctx, spec, opts)
		if err != nil {
			if len(done) > 0 && !l.DryRun {
				var rest []string
				for _, s := range specs[i:] {
					rest = append(rest, shownName(s))
				}
				err = &PartialError{Committed: done, Counts: counts, NotLoaded: rest, Err: err}
			}
			return total, err
		}
		total.Counts.Add(res.Counts)
		total.Skipped = append(total.Skipped, res.Skipped...)
		done = append(done, shownName(spec))
		counts = append(counts, res.Counts.Total())
	}
	return total, nil
}

// shownName is spec as it may be shown.
func shownName(spec string) string {
	if spec == "-" {
		return "stdin"
	}
	return source.Redact(spec)
}

// Result is what a source loaded.
type Result struct {
	Counts  Counts    // resources stored per type (lines: an id given twice counts twice)
	Skipped []BadLine // bad lines skipped (with MaxErrors), each with its source
}

// SkippedByType counts the skipped lines per type ("unknown" when it could
// not be told).
func (r Result) SkippedByType() Counts {
	c := Counts{}
	for _, b := range r.Skipped {
		t := b.Type
		if t == "" {
			t = "unknown" // a line whose type could not be told
		}
		c[t]++
	}
	return c
}

// LoadSource opens spec and loads it in one transaction. An HTTP source that
// breaks off and cannot be resumed is loaded again from the start (nothing
// of the broken try was committed). Its errors are *SourceError, but for
// an interruption (the context's error).
func (l *Loader) LoadSource(ctx context.Context, spec string, opts source.Options) (Result, error) {
	res, name, err := l.loadSource(ctx, spec, opts)
	for i := range res.Skipped {
		res.Skipped[i].Source = name
	}
	switch {
	case err == nil:
		l.report(Event{Source: name, Phase: Done, Counts: res.Counts, Skipped: len(res.Skipped)})
	case isContext(err):
		l.report(Event{Source: name, Phase: Failed})
	default:
		var se *source.Error
		if errors.As(err, &se) && se.Source == name {
			err = se.Err // the name is said once, by SourceError
		}
		err = &SourceError{Source: name, Err: err}
		l.report(Event{Source: name, Phase: Failed})
	}
	return res, err
}

func (l *Loader) loadSource(ctx context.Context, spec string, opts source.Options) (Result, string, error) {
	name := shownName(spec)
	// Only a source that can be read twice may try the direct path.
	allowDirect := l.Opts.Type != "" && spec != "-"
	for restarts := 0; ; {
		// Its own context, so that a read in flight can be stopped when the
		// database connection breaks (see copyIn).
		srcCtx, cancel := context.WithCancel(ctx)
		src, err := source.Open(srcCtx, spec, opts)
		if err != nil {
			cancel()
			return Result{}, name, err
		}
		res, err := l.load(ctx, src, allowDirect, cancel)
		cancel()
		src.Close()
		if l.spare != nil {
			l.spare.release()
		}
		switch {
		case errors.Is(err, errNotDirect):
			allowDirect = false
			continue
		case errors.Is(err, source.ErrRestart) && restarts < restartTries-1 && ctx.Err() == nil:
			restarts++
			continue
		}
		return res, src.Name(), err
	}
}

func (l *Loader) report(e Event) {
	if l.Progress != nil {
		l.Progress(e)
	}
}

// progress reports how far the source src is read, and in which phase.
func (l *Loader) progress(src *source.Reader, phase Phase, lines int64) {
	if l.Progress != nil {
		l.Progress(Event{Source: src.Name(), Phase: phase, Lines: lines, BytesRead: src.BytesRead(), Size: src.Size()})
	}
}

const stageTable = "fhirbulk_stage"

func (l *Loader) load(ctx context.Context, src *source.Reader, allowDirect bool, stopSource func()) (Result, error) {
	if l.DryRun {
		return l.dryRun(ctx, src)
	}
	enc := newEncoder(src, l.Opts, l.spare)
	l.spare = enc
	defer func() {
		stopSource()
		enc.finish()
	}()
	if l.Progress != nil {
		enc.onLine = func(n int64) { l.progress(src, Reading, n) }
	}
	if err := l.prepareStage(ctx); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	tx, err := l.Conn.Begin(ctx)
	if err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback(context.Background()) //nolint:errcheck // the load's own error is the one to report
			l.stage.rolledBack()
		}
	}()
	if l.Opts.OnlyKnownTypes {
		enc.checkType = func(t string) error { return l.knownType(ctx, t) }
	}
	if l.Opts.PreserveMeta {
		var now time.Time
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
		enc.dec.NotAfter = now.Add(store.LastUpdatedSlack)
		enc.advance = func(txid int64) (int64, error) { return l.Layout.AdvanceTxids(ctx, txid) }
	}
	if allowDirect {
		now, ok, err := l.directCandidate(ctx, tx)
		if err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
		if ok {
			res, err := l.loadDirect(ctx, tx, src, enc, now)
			committed = err == nil
			return res, err
		}
	}
	addType := func(t string) error {
		if err := l.stage.addPartition(ctx, tx, t); err != nil {
			return err
		}
		enc.admit(t)
		return nil
	}
	for t := range l.stage.partitions {
		enc.known[t] = true
	}
	if l.Opts.Type != "" && !enc.known[l.Opts.Type] {
		if err := addType(l.Opts.Type); err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
	}
	l.stage.dirty = true // until it commits: rows of a rolled-back COPY stay on disk
	for {
		_, err := tx.Conn().PgConn().CopyFrom(ctx, enc, `COPY `+stageTable+` FROM STDIN (FORMAT binary)`)
		if enc.err != nil {
			return Result{}, enc.err // ours (bad line, read error) rather than the server's "COPY failed"
		}
		if err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
		if enc.newType == "" {
			break
		}
		if err := addType(enc.newType); err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
	}
	l.progress(src, Storing, enc.line)
	if err := l.checkCount(enc); err != nil {
		return Result{}, err
	}
	if err := enc.advanceTxids(); err != nil { // done by the last fill already; no txid is drawn before it
		return Result{}, l.dbError(ctx, err, enc)
	}
	// Writers of one type take turns (store.LockType); a source of several types
	// takes their locks in the one order every process uses.
	types := slices.Clone(enc.order)
	store.LockOrder(types)
	for _, t := range types {
		if err := l.Layout.Prepare(ctx, tx, t); err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
		if err := l.moveSkipping(ctx, tx, enc, t); err != nil {
			return Result{}, l.dbError(ctx, err, enc)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	committed = true
	l.stage.committed()
	l.markFilled(enc.counts)
	return enc.result(), nil
}

// knownType refuses type t when it is neither an R4 type nor has a table
// (Options.OnlyKnownTypes).
func (l *Loader) knownType(ctx context.Context, t string) error {
	if _, ok := r4types.Spelling(t); ok {
		return nil
	}
	ok, err := l.Layout.HasTable(ctx, t)
	if err != nil {
		return notTheLine{err}
	}
	if !ok {
		return &UnknownTypeError{Type: t}
	}
	return nil
}

// UnknownTypeError is a type that is neither an R4 type nor has a table.
type UnknownTypeError struct{ Type string }

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("resourceType %q is not an R4 type and has no table%s (--new-type makes its table)", e.Type, store.DidYouMean(e.Type))
}

// prepareStage makes the staging table on this connection when it is not
// there yet (outside any transaction, so it outlives a failed load), and
// empties it after a load that rolled back.
func (l *Loader) prepareStage(ctx context.Context) error {
	s := &l.stage
	if s.conn != l.Conn {
		*s = stage{conn: l.Conn, partitions: map[string]string{}}
		_, err := l.Conn.Exec(ctx, `CREATE TEMP TABLE `+stageTable+` (
			rtype text NOT NULL, n bigint NOT NULL, id text NOT NULL, cts timestamptz,
			txid bigint, ts timestamptz, resource text NOT NULL
		) PARTITION BY LIST (rtype) ON COMMIT DELETE ROWS`)
		if err != nil {
			s.conn = nil
			return err
		}
		return nil
	}
	if s.dirty {
		if _, err := l.Conn.Exec(ctx, `TRUNCATE `+stageTable); err != nil {
			return err
		}
		s.dirty = false
	}
	return nil
}

func (s *stage) addPartition(ctx context.Context, tx pgx.Tx, t string) error {
	s.made++
	p := pgx.Identifier{fmt.Sprintf("%s_%d", stageTable, s.made)}.Sanitize()
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+p+` PARTITION OF `+stageTable+` FOR VALUES IN (`+quoteLiteral(t)+`) ON COMMIT DELETE ROWS`); err != nil {
		return err
	}
	if s.fresh == nil {
		s.fresh = map[string]string{}
	}
	s.fresh[t] = p
	return nil
}

func (s *stage) partition(t string) string {
	if p, ok := s.fresh[t]; ok {
		return p
	}
	return s.partitions[t]
}

// committed keeps the partitions the transaction made.
func (s *stage) committed() {
	for t, p := range s.fresh {
		s.partitions[t] = p
	}
	s.fresh = nil
	s.dirty = false
}

// rolledBack forgets the partitions the transaction made: they are gone.
func (s *stage) rolledBack() {
	s.fresh = nil
}

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
	l.progress(src, Storing, enc.line)
	if err := l.checkCount(enc); err != nil {
		return Result{}, err
	}
	if err := enc.advanceTxids(); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	l.markFilled(enc.counts)
	return enc.result(), nil
}

// dryRun reads src as load does and applies the same rules to its lines:
// a JSON object, a usable id, a resourceType that fits, no byte that
// PostgreSQL refuses, the format check, MaxErrors and ExpectCount. What
// only the server can find (a number out of jsonb's range, a table of
// another shape, a type name that clashes with a table's) is not found.
func (l *Loader) dryRun(ctx context.Context, src *source.Reader) (Result, error) {
	enc := newEncoder(src, l.Opts, l.spare)
	l.spare = enc
	if l.Progress != nil {
		enc.onLine = func(n int64) { l.progress(src, Reading, n) }
	}
	if l.Opts.Type != "" {
		enc.known[l.Opts.Type] = true
	}
	if l.Opts.PreserveMeta {
		enc.dec.NotAfter = time.Now().Add(store.LastUpdatedSlack) // no server: this clock
	}
	for !enc.ended || enc.newType != "" {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		if enc.newType != "" {
			enc.admit(enc.newType)
		}
		enc.out, enc.pos, enc.tail = enc.out[:0], 0, nil
		if err := enc.fillCopy(1 << 20); err != nil {
			return Result{}, err
		}
	}
	if err := l.checkCount(enc); err != nil {
		return Result{}, err
	}
	return enc.result(), nil
}

// checkCount fails a source that does not hold the resources it was said
// to (the file was cut short or changed).
func (l *Loader) checkCount(enc *encoder) error {
	if l.Opts.ExpectCount == nil {
		return nil
	}
	n := Counts(enc.counts).Total() + int64(len(enc.bad))
	if n != *l.Opts.ExpectCount {
		return fmt.Errorf("holds %d resources, the manifest says %d (cut short, or changed?)", n, *l.Opts.ExpectCount)
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
				le.Reason += fmt.Sprintf(" (more than --max-errors %d bad lines)", enc.maxErrors)
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

// dbError turns an error of the database into what the user is told: the
// context's error when interrupted, a plain "connection lost" when the
// server went away (nothing of the source is committed then), else the
// server's message as one line.
func (l *Loader) dbError(ctx context.Context, err error, enc *encoder) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case l.Conn.IsClosed():
		return fmt.Errorf("lost the connection to the server after line %d (nothing of this source was committed): %w", enc.line, sqlError(err))
	}
	return sqlError(err)
}

// move puts the staged rows of type t into its table. unique says the
// source certainly has no repeated id of this type; staged is how many rows.
func (l *Loader) move(ctx context.Context, tx pgx.Tx, t, stage string, unique bool, staged int64) error {
	if l.Opts.PreserveMeta {
		if err := checkVersions(ctx, tx, t, stage); err != nil {
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
func checkVersions(ctx context.Context, tx pgx.Tx, t, stage string) error {
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
	if older {
		return &ndjson.LineError{Line: n, Reason: fmt.Sprintf("meta.versionId %d is older than version %d of %s in the database: stored, it would make the history go backwards (drop --preserve-meta to store it as a new version)", txid, stored, what)}
	}
	return &ndjson.LineError{Line: n, Reason: fmt.Sprintf("meta.versionId %d is the version of %s in the database, which differs from this line (its resource, lastUpdated or createdAt): a version never changes (drop --preserve-meta to store it as a new version)", txid, what)}
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
	probe(a, a) //nolint:errcheck // for the message of that very line
	return &ndjson.LineError{Line: a, Reason: "invalid JSON: " + msg}
}

func isContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func sqlError(err error) error { return pg.Wrap(err) }

// quoteLiteral quotes a resource type name (already validated to
// [A-Za-z0-9]) as an SQL string literal; DDL takes no parameters.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
