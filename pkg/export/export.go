// Package export writes a whole database, or some of its types, as an HL7
// Bulk Data folder: one ndjson file per type (or numbered files of a split
// size), the deletions of an incremental export, and manifest.json. Every
// table is read as of one instant: the coordinator exports a snapshot
// (pg.Take) and every connection reads at it, several tables and ranges of
// one big table at once. The folder appears whole when the export is
// complete (sink.Folder), or not at all.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/compartment"
	"github.com/fhirbulk/fhirbulk/pkg/dump"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/r4types"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Options say what Export writes, and how.
type Options struct {
	DSN   string
	Types []string // nil: every type that has resources
	// Patients, when set, keeps the Patient compartments it selects
	// (HL7's Patient-level export): the types of the compartment only, and
	// of them the rows in it. Group, when not "", keeps those of the
	// Patients that are the Group's members, read at the export's
	// snapshot (HL7's Group-level export); with Patients too, of those
	// members that Patients names.
	Patients *compartment.Selection
	Group    string
	// Elements, when not nil, keep only these top-level elements of each
	// resource (HL7's _elements: "code" for every type, "Observation.code"
	// for one), and those its type requires; id and meta stay, meta
	// tagged SUBSETTED. A type no element names is exported whole.
	Elements []string
	// SkipMissing leaves out a type of Types that has no table (nothing of
	// it to export) instead of refusing it: the server's $export, whose
	// callers name types of FHIR, not tables.
	SkipMissing bool
	FHIR        bool // FHIR format, as dump --fhir
	Gzip        bool
	SplitSize   int64 // uncompressed bytes per file; 0: one file per type
	Parallel    int   // connections (default 2)
	// Since and Until, when not zero, keep the resources changed in
	// [Since, Until] (ts); with Since the deletions since then are listed
	// too.
	Since, Until time.Time
	// Wait bounds how long the export waits for other sessions: for a
	// table lock (lock_timeout), and, for a role that may not read when
	// other roles' transactions began, for those open at its start to end
	// (pg.TakeWatermarked). 0: not at all.
	Wait time.Duration
	// Capped, when set, is told that Parallel was more than the server's
	// free connection slots allow (see freeSlots), and how many it uses.
	Capped func(asked, used, free int)
	// Waiting, when set, is told that the export waits for n transactions
	// whose start its role cannot read (once, before it waits).
	Waiting func(n int)
	// From, when not nil, is the extension of the manifest the export goes
	// on from (--since-manifest; Since is its watermark): Export refuses
	// one made on another database, with another set of types, or with a
	// watermark after this export's snapshot (a *ChainError), unless
	// ForceSince.
	From       *bulkdata.Ext
	ForceSince bool
	Request    string // the command, without secrets, for the manifest
	Version    string // fhirbulk's, for the manifest
	// Upload tunes the uploads of an export to a bucket (part size and
	// concurrency: the memory each file being written may take).
	Upload sink.Upload
	// SignURLs, when not zero, makes the manifest's urls pre-signed https
	// URLs valid that long (requiresAccessToken false), so that another
	// server's $import can read them; the folder must be in a bucket.
	SignURLs time.Duration
	// FromPath is where From was read, recorded as the new manifest's
	// extension's Follows.
	FromPath string
	// Progress, when set, is told how far the export is; it is called from
	// one goroutine at a time.
	Progress func(Progress)
}

// compartment is what the manifest's extension records of Patients and
// Group (bulkdata.Ext.Compartment).
func (o Options) compartment() string {
	switch {
	case o.Group != "":
		return "group:" + o.Group
	case o.Patients == nil:
		return ""
	case o.Patients.All:
		return "patients"
	}
	ids := slices.Clone(o.Patients.IDs)
	slices.Sort(ids)
	return "patients:" + strings.Join(slices.Compact(ids), ",")
}

// NotInCompartmentError is a type asked of a Patient- or Group-level
// export that is not in the Patient compartment (Organization,
// Practitioner, Medication, ...).
type NotInCompartmentError struct{ Type string }

func (e *NotInCompartmentError) Error() string {
	return fmt.Sprintf("%s is not in the Patient compartment: a Patient- or Group-level export has none of it", e.Type)
}

// NoGroupError is a Group-level export of a Group that is not there.
type NoGroupError struct{ ID string }

func (e *NoGroupError) Error() string { return fmt.Sprintf("no Group %q", e.ID) }

// groupMembers are the ids of the Patients that are members of Group id
// (member.entity, not inactive; a reference in any form PatientOf reads),
// as the export's snapshot sees them; members of other types are not
// patients, and are left out.
func groupMembers(ctx context.Context, tx pgx.Tx, id string) ([]string, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, store.Table("Group")).Scan(&exists); err != nil {
		return nil, pg.Wrap(err)
	}
	if !exists {
		return nil, &NoGroupError{id}
	}
	rows, err := tx.Query(ctx, `SELECT m.v->'entity'->>'resourceType', m.v->'entity'->>'id', coalesce(m.v->'entity'->>'reference', m.v->'entity'->>'uri')
		FROM `+store.Table("Group")+` g
		LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(g.resource->'member') = 'array' THEN g.resource->'member' ELSE '[]' END) m(v)
			ON coalesce(m.v->>'inactive', 'false') <> 'true'
		WHERE g.id = $1`, id)
	if err != nil {
		return nil, pg.Wrap(err)
	}
	defer rows.Close()
	found := false
	var ids []string
	for rows.Next() {
		found = true
		var typ, mid, ref *string
		if err := rows.Scan(&typ, &mid, &ref); err != nil {
			return nil, pg.Wrap(err)
		}
		var pid string
		switch {
		case typ != nil && *typ == "Patient" && mid != nil:
			pid = *mid
		case ref != nil:
			pid, _ = compartment.RefPatient(*ref) // Patient/ID, versioned or not
		}
		if !compartment.ID.MatchString(pid) {
			continue // no member, not a Patient, or no id a reference can name
		}
		ids = append(ids, pid)
	}
	if err := rows.Err(); err != nil {
		return nil, pg.Wrap(err)
	}
	if !found {
		return nil, &NoGroupError{id}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// elementsOf are the elements of type t that Elements keeps (those
// named for it or for every type, and those it requires); nil when none
// is named for it: all of them.
func elementsOf(t string, elements []string) []string {
	var out []string
	for _, e := range elements {
		if typ, el, ok := strings.Cut(e, "."); !ok {
			out = append(out, e)
		} else if typ == t {
			out = append(out, el)
		}
	}
	if out == nil {
		return nil
	}
	out = append(out, r4types.Required(t)...)
	for i, e := range out { // a choice, named as value or value[x]: value[x]
		if base := strings.TrimSuffix(e, "[x]"); slices.Contains(r4types.Choices(t), base) {
			out[i] = base + "[x]"
		}
	}
	return out
}

// After is the Since that keeps the resources changed after t (not at t):
// ts is kept to the microsecond, so the first instant after t is the next
// whole microsecond.
func After(t time.Time) time.Time {
	return t.Truncate(time.Microsecond).Add(time.Microsecond)
}

// Progress is how far an export is.
type Progress struct {
	Rows     int64 // written so far
	Bytes    int64 // of ndjson, before compression
	Estimate int64 // rows the planner expects in all (a guess; -1 unknown)
	Done     bool
}

// NoTableError is a requested type without a table.
type NoTableError struct{ Err error }

func (e *NoTableError) Error() string { return e.Err.Error() }
func (e *NoTableError) Unwrap() error { return e.Err }

// Export writes the export into the new folder dir (replacing an existing
// one only when force, and only once the new one is complete) and returns
// its manifest, which is also dir/manifest.json.
func Export(ctx context.Context, dir string, force bool, o Options) (*bulkdata.Manifest, error) {
	o.Parallel = max(o.Parallel, 1)
	if o.Patients != nil || o.Group != "" {
		for _, t := range o.Types {
			if !compartment.In(t) {
				return nil, &NotInCompartmentError{t}
			}
		}
	}
	folder, err := sink.OpenFolder(dir, sink.FolderOptions{Force: force, Context: ctx, Upload: o.Upload})
	if err != nil {
		return nil, err
	}
	signer, _ := folder.(sink.Signer)
	if o.SignURLs > 0 {
		if signer == nil {
			folder.Abort()
			return nil, &SignError{Err: fmt.Errorf("%s is not in a bucket: only objects in a bucket get signed URLs", folder.Path())}
		}
		// Signing needs what the credentials may lack (a GCS service
		// account's key, an Azure shared key): said now, not after the
		// data is written.
		if _, err := signer.SignedURL(bulkdata.ManifestName, o.SignURLs); err != nil {
			folder.Abort()
			return nil, &SignError{Err: err}
		}
	}
	committed := false
	defer func() {
		if !committed {
			folder.Abort()
		}
	}()
	conn, err := pg.ConnectWith(ctx, o.DSN, sessionSettings(o.Wait))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	id, err := pg.ReadIdentity(ctx, conn)
	if err != nil {
		return nil, err
	}
	if o.Parallel > 1 {
		free, err := freeSlots(ctx, conn)
		if err != nil {
			return nil, err
		}
		if most := 1 + max(free-max(1, free/4), 0); o.Parallel > most {
			if o.Capped != nil {
				o.Capped(o.Parallel, most, free)
			}
			o.Parallel = most
		}
	}
	snap, err := pg.TakeWatermarked(ctx, conn, o.Wait, o.Waiting)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	if o.From != nil && !o.ForceSince {
		if err := checkChain(*o.From, id, typeSet(o.Types), o.compartment(), o.Since, snap.At); err != nil {
			return nil, err
		}
	}
	sel := o.Patients
	if o.Group != "" {
		ids, err := groupMembers(ctx, snap.Tx(), o.Group)
		if err != nil {
			return nil, err
		}
		if o.Patients != nil && !o.Patients.All { // those of the Group's members asked for
			asked := map[string]bool{}
			for _, id := range o.Patients.IDs {
				asked[id] = true
			}
			ids = slices.DeleteFunc(ids, func(id string) bool { return !asked[id] })
		}
		sel = &compartment.Selection{IDs: ids}
	}
	want, skipMissing := o.Types, o.SkipMissing
	if sel != nil && len(want) == 0 {
		// The compartment's types that have a table: only they are read,
		// and locked.
		want, skipMissing = compartment.Types(), true
	}
	types, err := selectTypes(ctx, snap.Tx(), want, skipMissing, func(tables []string) error {
		return lockTables(ctx, snap.Tx(), tables, !o.Since.IsZero(), o.Wait)
	})
	if err != nil {
		return nil, err
	}
	e := &exporter{o: o, folder: folder, coord: snap.Tx(), outputs: map[string]*output{}, deleted: map[string]*output{},
		errs: &output{folder: folder, file: bulkdata.Name{Kind: bulkdata.Errors, Gzip: o.Gzip}, pending: 1}}
	var tasks []task
	if sel != nil {
		e.filters = map[string]string{}
		kept := types[:0]
		for _, t := range types {
			f, ok, err := sel.Filter(t.Type)
			switch {
			case err != nil:
				return nil, err
			case !compartment.In(t.Type):
				continue // every type of the database, less those outside
			case !ok:
				f = "false" // nobody selected
			}
			e.filters[t.Type] = f
			kept = append(kept, t)
		}
		types = kept
	}
	if sel != nil && !sel.All {
		// A few patients' rows: one task per type, each one query (an index
		// on the reference serves it whole; ranges would repeat it).
		tasks = plan(types, 1)
	} else {
		tasks = plan(types, o.Parallel)
	}
	for _, t := range types {
		if sel == nil { // a compartment's rows are not the table's: no estimate
			e.estimate += max(t.Estimate, 0)
		}
		e.outputs[t.Type] = &output{folder: folder, file: bulkdata.Name{Type: t.Type, Split: o.SplitSize > 0, Gzip: o.Gzip}, splitSize: o.SplitSize}
		if !o.Since.IsZero() {
			e.deleted[t.Type] = &output{folder: folder, file: bulkdata.Name{Kind: bulkdata.Deleted, Type: t.Type, Gzip: o.Gzip}, pending: 1}
			tasks = append(tasks, task{typ: t.Type, deleted: true})
		}
	}
	for _, t := range tasks {
		if !t.deleted {
			e.outputs[t.typ].pending++
		}
	}
	err = runTasks(ctx, o.DSN, snap, o.Parallel, tasks, e.run)
	if err == nil {
		err = e.errs.taskDone()
	}
	if err != nil {
		for _, out := range e.all() {
			out.abort()
		}
		return nil, err
	}
	m := e.manifest(snap, id)
	if o.SignURLs > 0 {
		if err := signURLs(m, signer, o.SignURLs); err != nil {
			return nil, err
		}
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if err := folder.Commit(data); err != nil {
		return nil, err
	}
	committed = true
	e.report(true)
	return m, nil
}

// SignError is a manifest whose urls cannot be signed.
type SignError struct{ Err error }

func (e *SignError) Error() string { return e.Err.Error() }
func (e *SignError) Unwrap() error { return e.Err }

// signURLs replaces each file's url (a name in the folder) with a
// pre-signed URL valid for ttl.
func signURLs(m *bulkdata.Manifest, s sink.Signer, ttl time.Duration) error {
	for _, list := range [][]bulkdata.File{m.Output, m.Deleted, m.Error} {
		for i := range list {
			u, err := s.SignedURL(list[i].URL, ttl)
			if err != nil {
				return &SignError{Err: err}
			}
			list[i].URL = u
		}
	}
	m.RequiresAccessToken = false
	return nil
}

// selectTypes lists the types to export: those asked for (each must have a
// table), else every type; lock is called with their tables before any of
// them is read.
func selectTypes(ctx context.Context, tx pgx.Tx, want []string, skipMissing bool, lock func([]string) error) ([]store.TypeInfo, error) {
	var keep func(string) bool
	if len(want) > 0 {
		keep = func(table string) bool {
			return slices.ContainsFunc(want, func(w string) bool { return store.TableName(w) == table })
		}
	}
	all, err := store.ListTypesWith(ctx, tx, keep, lock)
	if err != nil {
		return nil, err
	}
	if len(want) == 0 {
		return all, nil
	}
	var out []store.TypeInfo
	for _, w := range want {
		i := slices.IndexFunc(all, func(t store.TypeInfo) bool { return t.Type == w })
		if i < 0 {
			if err := store.CheckTable(ctx, tx, w); err != nil {
				if skipMissing && errors.Is(err, store.ErrNoTable) {
					continue
				}
				return nil, &NoTableError{err}
			}
			var parent *string
			if err := tx.QueryRow(ctx, `SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = to_regclass($1)`, store.Table(w)).Scan(&parent); err != nil && err != pgx.ErrNoRows {
				return nil, pg.Wrap(err)
			}
			if parent != nil {
				return nil, &NoTableError{fmt.Errorf("table %s is a partition or an inheritance child of %s: its resources are exported with that table's type", store.Table(w), *parent)}
			}
			// A table that is there but is not a type (no primary key on id).
			return nil, &NoTableError{fmt.Errorf("table %s is not in the Aidbox layout", store.Table(w))}
		}
		if !slices.ContainsFunc(out, func(t store.TypeInfo) bool { return t.Type == w }) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

type exporter struct {
	o        Options
	coord    pgx.Tx // the coordinator's transaction, which holds the table locks
	folder   sink.Folder
	outputs  map[string]*output // by type
	deleted  map[string]*output
	errs     *output // the rows that cannot be exported, as OperationOutcomes
	estimate int64
	filters  map[string]string // by type: the compartment's condition (Patients, Group)

	mu          sync.Mutex // for the progress counters and the callback
	rows, bytes int64
}

// run does one task on a connection reading at the snapshot.
func (e *exporter) run(ctx context.Context, tx pgx.Tx, t task) error {
	if tx != e.coord {
		if err := lockNowait(ctx, tx, t); err != nil {
			return err
		}
	}
	if t.deleted {
		out := e.deleted[t.typ]
		if err := e.deletions(ctx, tx, t.typ, out); err != nil {
			return fmt.Errorf("export %s: deleted: %w", t.typ, err)
		}
		return out.taskDone()
	}
	out := e.outputs[t.typ]
	b := &batch{out: out}
	counted := &countingWriter{w: b}
	var lastRows, lastBytes int64
	opts := dump.Options{Type: t.typ, FHIR: e.o.FHIR, ChangedFrom: e.o.Since, ChangedUntil: e.o.Until, Blocks: t.blocks, Bad: e.bad, Filter: e.filters[t.typ],
		Elements: elementsOf(t.typ, e.o.Elements),
		Progress: func(rows int64) {
			e.add(rows-lastRows, counted.n-lastBytes)
			lastRows, lastBytes = rows, counted.n
		}}
	if _, err := dump.Dump(ctx, tx, opts, counted); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("export %s: %w", t.typ, err)
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("export %s: %w", t.typ, err)
	}
	if err := out.taskDone(); err != nil {
		return fmt.Errorf("export %s: %w", t.typ, err)
	}
	return nil
}

func (e *exporter) add(rows, bytes int64) {
	e.mu.Lock()
	e.rows += rows
	e.bytes += bytes
	e.mu.Unlock()
	e.report(false)
}

func (e *exporter) report(done bool) {
	if e.o.Progress == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	est := e.estimate
	if est == 0 {
		est = -1
	}
	e.o.Progress(Progress{Rows: e.rows, Bytes: e.bytes, Estimate: est, Done: done})
}

// deletions writes the resources of type t deleted in the export's window
// and not there any more, as HL7 wants them: one line per resource, a
// transaction Bundle with one DELETE entry, whose meta is the deletion's
// (its versionId the txid, its lastUpdated the ts of the latest 'deleted'
// row: import --preserve-meta gives the copy's deletion the same), as
// store.DeletedSince finds them; one deleted and created again is in the
// output, not here.
func (e *exporter) deletions(ctx context.Context, tx pgx.Tx, t string, out *output) error {
	b := &batch{out: out}
	var line []byte
	err := store.DeletedSince(ctx, tx, t, e.o.Since, e.o.Until, e.filters[t], func(id string, txid int64, at time.Time) error {
		line = bulkdata.AppendDeleted(line[:0], t, id, txid, at)
		_, err := b.Write(line)
		return err
	})
	if err != nil {
		return err
	}
	return b.flush()
}

// bad lists a row that cannot be exported in the error file, as HL7 bulk
// exports report theirs: an OperationOutcome, whose issue names the row.
// The export goes on without it.
func (e *exporter) bad(b *dump.BadRowError) error {
	return e.errs.write(outcomeLine(b))
}

// outcomeLine is the error file's line for a bad row.
func outcomeLine(b *dump.BadRowError) []byte {
	diagnostics := b.Error() + ": not exported"
	if b.ID != "" {
		diagnostics = b.Error() + " (txid " + strconv.FormatInt(b.Txid, 10) + "): not exported"
	}
	return bulkdata.AppendIssue(nil, diagnostics, b.Type)
}

func (e *exporter) all() []*output {
	outs := []*output{e.errs}
	for _, o := range e.outputs {
		outs = append(outs, o)
	}
	for _, o := range e.deleted {
		outs = append(outs, o)
	}
	return outs
}

// manifest is the export's HL7 manifest. Its transactionTime is the
// watermark less a microsecond: a client that asks the next export for
// changes after it (HL7's _since is exclusive) misses nothing.
func (e *exporter) manifest(snap *pg.Snapshot, id pg.Identity) *bulkdata.Manifest {
	watermark := snap.Watermark
	if !e.o.Until.IsZero() && e.o.Until.Before(watermark) {
		watermark = e.o.Until.Add(time.Microsecond) // what is after Until is not in this export
	}
	m := &bulkdata.Manifest{
		TransactionTime: bulkdata.FormatTime(watermark.Add(-time.Microsecond)),
		Request:         e.o.Request,
	}
	types := make([]string, 0, len(e.outputs))
	for t := range e.outputs {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		m.Output = append(m.Output, e.outputs[t].files...)
		if d := e.deleted[t]; d != nil {
			m.Deleted = append(m.Deleted, d.files...)
		}
	}
	m.Error = append(m.Error, e.errs.files...)
	ext := bulkdata.Ext{Format: "aidbox", Snapshot: bulkdata.FormatTime(snap.At), Watermark: bulkdata.FormatTime(watermark), Version: e.o.Version,
		Database: databaseOf(id), Types: typeSet(e.o.Types), Compartment: e.o.compartment(), Follows: e.o.FromPath}
	if e.o.FHIR {
		ext.Format = "fhir"
	}
	if !e.o.Since.IsZero() {
		ext.Since = bulkdata.FormatTime(e.o.Since)
	}
	if !e.o.Until.IsZero() {
		ext.Until = bulkdata.FormatTime(e.o.Until)
	}
	m.SetExt(ext)
	return m
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Dump writes every resource of one type to w as dump.Dump does, but read
// over parallel connections that share one snapshot (conn's, and
// parallel-1 more to dsn), each taking ranges of the table's blocks: the
// lines come in no particular order. It returns how many it wrote.
func Dump(ctx context.Context, conn *pgx.Conn, dsn string, parallel int, opts dump.Options, w io.Writer) (int64, error) {
	snap, err := pg.Take(ctx, conn)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	if err := store.CheckTable(ctx, snap.Tx(), opts.Type); err != nil {
		return 0, err
	}
	var blocks int64
	if err := snap.Tx().QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint`, store.Table(opts.Type)).Scan(&blocks); err != nil {
		return 0, pg.Wrap(err)
	}
	tasks := plan([]store.TypeInfo{{Type: opts.Type, Blocks: blocks}}, parallel)
	if len(tasks) == 1 && parallel > 1 && blocks > 1 {
		// Small enough to be one task: still cut it, one range per connection.
		tasks = nil
		step := (blocks + int64(parallel) - 1) / int64(parallel)
		for from := int64(0); from < blocks; from += step {
			to := from + step
			if to >= blocks {
				to = -1
			}
			tasks = append(tasks, task{typ: opts.Type, blocks: &dump.BlockRange{From: from, To: to}})
		}
	}
	out := &lockedWriter{w: w}
	var mu sync.Mutex
	var total int64
	progress := opts.Progress
	err = runTasks(ctx, dsn, snap, parallel, tasks, func(ctx context.Context, tx pgx.Tx, t task) error {
		o := opts
		o.Blocks = t.blocks
		var last int64
		o.Progress = func(rows int64) {
			mu.Lock()
			total += rows - last
			last = rows
			if progress != nil {
				progress(total)
			}
			mu.Unlock()
		}
		b := &batch{out: out}
		if _, err := dump.Dump(ctx, tx, o, writerFunc(b.Write)); err != nil {
			return err
		}
		return b.flush()
	})
	return total, err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// freeSlots is how many more connections the server would take from this
// role now: max_connections, less the slots reserved for superusers (for
// a role that is not one), less the sessions open; and no more than the
// role's and the database's own limits allow. A role that may not see
// other roles' sessions still sees that they are there (pg_stat_activity
// lists them all); background processes without a role are not counted.
// The export takes at most three quarters of them (Export), so that it
// never takes every slot from the application.
func freeSlots(ctx context.Context, conn *pgx.Conn) (int, error) {
	var free int
	err := conn.QueryRow(ctx, `SELECT least(
		current_setting('max_connections')::int
			- CASE WHEN r.rolsuper THEN 0 ELSE current_setting('superuser_reserved_connections')::int END
			- (SELECT count(*) FROM pg_stat_activity WHERE usesysid IS NOT NULL)::int,
		CASE WHEN r.rolconnlimit >= 0 THEN r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE usesysid = r.oid)::int ELSE 1 << 30 END,
		CASE WHEN d.datconnlimit >= 0 THEN d.datconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE datid = d.oid)::int ELSE 1 << 30 END)
		FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`).Scan(&free)
	if err != nil {
		return 0, fmt.Errorf("count the free connection slots: %w", pg.Wrap(err))
	}
	return max(free, 0), nil
}
