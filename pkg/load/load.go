// Package load stores ndjson resources in the Aidbox storage layout, the
// way Aidbox's $load does: a raw upsert by id, for speed, with no FHIR
// validation. A line is only checked to be storable (a JSON object with a
// usable id and resourceType, text PostgreSQL takes, optionally in the
// load's format and of a known type); a bad line fails its source, or is
// skipped and reported (Options.MaxErrors).
//
// One source is one transaction, tables included: a type's tables are made
// inside it when missing (store.Layout), so a load that fails leaves
// nothing. A source read over HTTP that breaks off is loaded again from
// the start. DeleteSource applies a Bulk Data deletions source the same
// way, in one transaction.
//
// The encoder reads a source's lines, checks and splices each (lineParser,
// store.Decoder) and encodes it as a binary COPY row; a copyIn hands those
// rows to pgconn's CopyFrom as they are made, so no source is held in
// memory. Where the rows go:
//
//   - The direct path (direct.go): a typed load of a source that can be
//     read twice, into a table that is missing or empty, is one COPY of
//     rows in their final form straight into the table, under the type's
//     writer lock. Whatever the server rejects there (an id given twice,
//     JSON it will not take) makes the source load again the staged way.
//   - The staged path (staging.go, move.go): the rows stream into the
//     connection's staging table, partitioned by resource type (a line of a
//     new type ends the COPY, its partition is made, the next COPY goes
//     on). Then, per type, in the one order every process uses, the load
//     takes the type's writer lock (store.LockType) and moves the rows with
//     one INSERT ... SELECT: the fast path, tried when the source's ids of
//     that type are known to be unique (a bounded set of id hashes). When
//     it meets an id that exists it is rolled back to a savepoint; then,
//     and for a type whose ids may repeat, the upsert runs: deduplicate
//     (the last line wins), copy old versions to history when asked,
//     UPDATE the existing ids, INSERT the new ones. With
//     Options.PreserveMeta the staged versions are first checked against
//     the stored ones. JSON that PostgreSQL refuses is found by halving the
//     staged line numbers, and named as a bad line.
//
// Staging the resource as text and casting it once in the INSERT measured
// faster than COPYing it as jsonb, and keeps the line number beside every
// row for the error message when PostgreSQL rejects the JSON.
package load

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

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
	// maxIDHashes bounds the ids of a source whose hashes are kept to tell
	// that a type's ids are unique (0: defaultMaxIDHashes); past it, every
	// type of the source takes the path that allows repeated ids.
	maxIDHashes int
}

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

// restartTries bounds how often a source whose HTTP body broke off (and
// could not be resumed) is loaded again from the start.
const restartTries = 3

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

// Summary is the result as one JSON object: the resources stored per type,
// {"CarePlan":356,"Observation":20382}, or, for a load of one type
// (single: Options.Type), their total, {"total":20738}. With skipped (a
// load that may skip bad lines: Options.MaxErrors) a last field says how
// many were skipped: per type, "skipped":{"unknown":1}, or with single
// their number, "skipped":1.
func (r Result) Summary(single, skipped bool) string {
	var b strings.Builder
	b.WriteByte('{')
	if single {
		fmt.Fprintf(&b, `"total":%d`, r.Counts.Total())
	} else {
		r.Counts.writeFields(&b)
	}
	if skipped {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		if single {
			fmt.Fprintf(&b, `"skipped":%d`, len(r.Skipped))
		} else {
			b.WriteString(`"skipped":` + r.SkippedByType().JSON())
		}
	}
	b.WriteByte('}')
	return b.String()
}

// TooManyBadLinesError is why a bad line fails its source: Max were
// skipped already (Options.MaxErrors).
type TooManyBadLinesError struct{ Max int }

func (e *TooManyBadLinesError) Error() string { return fmt.Sprintf("more than %d bad lines", e.Max) }

// NoTypeError is a line without a resourceType in a source of several
// types (no Options.Type).
type NoTypeError struct{}

func (e *NoTypeError) Error() string { return `no "resourceType"` }

// OtherTypeError is a line whose resourceType Name is not Options.Type.
type OtherTypeError struct{ Name, Type string }

func (e *OtherTypeError) Error() string {
	return fmt.Sprintf("resourceType %q in a source of type %s", e.Name, e.Type)
}

// BadLine is a line a load skipped (with --max-errors): its number, the
// id and type of its resource when they could be told, and why.
type BadLine struct {
	Source string // as it may be shown (redacted)
	Line   int64
	ID     string
	Type   string
	Reason string
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
	var b strings.Builder
	b.WriteByte('{')
	c.writeFields(&b)
	b.WriteByte('}')
	return b.String()
}

// writeFields writes the counts as the fields of a JSON object, sorted by
// type, without the braces.
func (c Counts) writeFields(b *strings.Builder) {
	types := make([]string, 0, len(c))
	for t := range c {
		types = append(types, t)
	}
	sort.Strings(types)
	for i, t := range types {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "%q:%d", t, c[t])
	}
}

// Total is the sum over all types.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

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

// UnknownTypeError is a type that is neither an R4 type nor has a table
// (Options.OnlyKnownTypes).
type UnknownTypeError struct{ Type string }

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("resourceType %q is not an R4 type and has no table%s", e.Type, store.DidYouMean(e.Type))
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

func (l *Loader) load(ctx context.Context, src *source.Reader, allowDirect bool, stopSource func()) (Result, error) {
	if l.DryRun {
		return l.dryRun(ctx, src)
	}
	enc := l.newEncoder(src)
	defer func() {
		stopSource()
		enc.finish()
	}()
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
			tx.Rollback(context.Background()) // the load's own error is the one to report
			l.stage.rolledBack()
		}
	}()
	if err := l.bindEncoder(ctx, tx, enc); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
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
	if err := l.copyToStage(ctx, tx, enc); err != nil {
		return Result{}, err
	}
	if err := l.doneReading(ctx, src, enc); err != nil {
		return Result{}, err
	}
	if err := l.moveStaged(ctx, tx, enc); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, l.dbError(ctx, err, enc)
	}
	committed = true
	l.stage.committed()
	l.markFilled(enc.counts)
	return enc.result(), nil
}

// newEncoder makes the encoder of src, which the last source's encoder
// lends its buffers, and which reports the lines it reads.
func (l *Loader) newEncoder(src *source.Reader) *encoder {
	enc := newEncoder(src, l.Opts, l.spare)
	l.spare = enc
	if l.maxIDHashes > 0 {
		enc.ids.max = l.maxIDHashes
	}
	if l.Progress != nil {
		enc.onLine = func(n int64) { l.progress(src, Reading, n) }
	}
	return enc
}

// bindEncoder gives enc what it asks of the database, in tx: whether a
// resourceType is known (OnlyKnownTypes) and, with PreserveMeta, the
// server's clock and a way to move transaction_id_seq past the txids the
// lines preserve.
func (l *Loader) bindEncoder(ctx context.Context, tx pgx.Tx, enc *encoder) error {
	if l.Opts.OnlyKnownTypes {
		enc.checkType = func(t string) error { return l.knownType(ctx, t) }
	}
	if l.Opts.PreserveMeta {
		var now time.Time
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return err
		}
		enc.dec.NotAfter = now.Add(store.LastUpdatedSlack)
		enc.advance = func(txid int64) (int64, error) { return l.Layout.AdvanceTxids(ctx, txid) }
	}
	return nil
}

// doneReading reports that src is all read, and checks what was read
// (ExpectCount) before anything of it is stored. Its errors are as the user
// is told them.
func (l *Loader) doneReading(ctx context.Context, src *source.Reader, enc *encoder) error {
	l.progress(src, Storing, enc.line)
	if err := l.checkCount(enc); err != nil {
		return err
	}
	// Done by the last fillCopy already (no txid is drawn before it): this
	// is only in case it was not.
	return l.dbError(ctx, enc.advanceTxids(), enc)
}

// dryRun reads src as load does and applies the same rules to its lines:
// a JSON object, a usable id, a resourceType that fits, no byte that
// PostgreSQL refuses, the format check, MaxErrors and ExpectCount. What
// only the server can find (a number out of jsonb's range, a table of
// another shape, a type name that clashes with a table's) is not found.
func (l *Loader) dryRun(ctx context.Context, src *source.Reader) (Result, error) {
	enc := l.newEncoder(src)
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
