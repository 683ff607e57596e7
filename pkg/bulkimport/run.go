package bulkimport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Options tune Run.
type Options struct {
	DSN string
	// DB is the identity of the database DSN reaches, read by the caller
	// (pg.ReadIdentity) on the connection it checked the database with;
	// when zero, Run connects once to read it before anything starts.
	DB       pg.Identity
	Store    Store
	Parallel int  // inputs loaded at once (default 2)
	FHIR     bool // every input is FHIR format, whatever the manifest says
	Aidbox   bool // every input is Aidbox format, whatever the manifest says
	// MaxErrors is how many bad lines an input may skip (see load.Options);
	// the skipped lines go to an errors file per input in the state folder.
	MaxErrors int
	// PreserveMeta restores txid and ts from meta (load --preserve-meta).
	PreserveMeta bool
	// FormatCheck is how many lines of each input are checked for the
	// other format (see load.Options; 0: none).
	FormatCheck int64
	Force       bool // load everything again, even a finished import
	// FormatHint, when set, says what to do about an input found in the
	// other format than the one it was taken for (load.Options.FormatHint).
	FormatHint func(found fhirformat.Format) string
	// Words, when set, words a bad line's facts (load.Options.Words).
	Words func(fact error) string
	// Source tunes how inputs are read (HTTP idle timeout, retries);
	// MaxLineSize bounds a line (0: no bound).
	Source      source.Options
	MaxLineSize int
	// Warn, when set, is told of trouble that does not stop the import
	// (the state file could not be rewritten once).
	Warn func(error)
	// Progress, when set, is called with a copy of the state when the
	// import starts and when it ends, and while inputs load every
	// progressEvery if anything changed (an input started or ended, lines
	// were read). It is called from one goroutine at a time.
	Progress func(st State)

	writeState func(st *State) error // tests count the writes; default Store.Write
	// failed, when set, is told why an input failed (a pull tells an
	// expired export by it).
	failed func(err error)
}

const (
	// saveEvery is how often, at most, the state file is rewritten while
	// inputs load (besides once at the start and once at the end). Written
	// on every change, it cost more than the loads themselves with many
	// small inputs: 5,000 one-line inputs made 10,165 fsynced rewrites of
	// a file growing to 1 MB, 80% of the CPU time. The price: after a
	// crash, inputs that finished in the last saveEvery may be recorded as
	// unfinished, and a resume loads them again (an upsert: the same rows,
	// as updates).
	saveEvery = time.Second
	// progressEvery is how often, at most, Progress is called.
	progressEvery = 200 * time.Millisecond
)

// Run runs (or resumes) import id of manifest m and returns its final state.
// It fails only when the import cannot start: the database cannot be
// reached, another process runs it, it finished already (without Force),
// its state file records other inputs or another database (an
// *OtherDatabaseError), or the state folder is not writable; then no state
// file is written. Inputs that fail are recorded in the state, which then
// says failed.
func Run(ctx context.Context, m *Manifest, id string, o Options) (*State, error) {
	if o.DB == (pg.Identity{}) {
		db, err := Identify(ctx, o.DSN)
		if err != nil {
			return nil, err
		}
		o.DB = db
	}
	lock, err := o.Store.Lock(id)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if o.Store.Live != nil {
		o.Store.Live.ids.Store(id, true)
		defer o.Store.Live.ids.Delete(id)
	}
	return o.run(ctx, m, id, nil)
}

// run is Run under the import's lock; pull, when not nil, is the state of
// the pull whose files m lists (see Pull).
func (o Options) run(ctx context.Context, m *Manifest, id string, pull *PullState) (*State, error) {
	st, err := o.begin(m, id, pull)
	if err != nil {
		return nil, err
	}
	r := &runner{st: st, o: o, m: m, write: o.Store.Write, saveEvery: saveEvery}
	if o.writeState != nil {
		r.write = o.writeState
	}
	// The state file exists before any input loads: import --detach waits
	// for it, and status reads it.
	r.show(true)
	if err := r.save(true); err != nil {
		return nil, err
	}

	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(o.Parallel, 1) {
		wg.Go(func() { r.worker(ctx, jobs) })
	}
	stop, ticked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticked)
		r.tick(stop)
	}()
feed:
	for i, in := range st.Inputs {
		if in.Status == StatusFinished || in.Kind == KindDeleted {
			continue
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	// Deletions come after every input has finished, in their order, each
	// file in one transaction: applied to what the inputs loaded, they
	// leave what the exporting database held.
	r.deletions(ctx)
	close(stop)
	<-ticked

	r.mu.Lock()
	now := time.Now().UTC()
	st.Time.End = &now
	st.Status = StatusFinished
	for i, in := range st.Inputs {
		switch {
		case in.Status == StatusFailed:
			st.Status = StatusFailed
		case in.Status != StatusFinished:
			// Interrupted before or while loading: nothing of it was committed.
			st.Inputs[i] = in.pending()
		}
	}
	if ctx.Err() != nil && st.Status != StatusFailed {
		st.Status = StatusInterrupted
		st.Time.End = nil
	}
	st.Error = nil
	for i, in := range st.Inputs {
		if in.Status == StatusFinished && in.Skipped > 0 {
			n := in.Skipped
			st.Error = append(st.Error, bulkdata.File{Type: "OperationOutcome", URL: r.o.Store.ErrorsPath(id, i), Count: &n})
		}
	}
	r.mu.Unlock()
	r.show(true)
	return st, r.save(true)
}

// Identify connects to the database of dsn once and reads its identity:
// what an import records, and checks before it starts.
func Identify(ctx context.Context, dsn string) (pg.Identity, error) {
	conn, err := pg.Connect(ctx, dsn)
	if err != nil {
		return pg.Identity{}, err
	}
	defer conn.Close(context.Background()) // read only
	return pg.ReadIdentity(ctx, conn)
}

// Check tells, without running it, whether import id of manifest m could
// start now: the refusals of Run that need no lock (the state folder
// cannot be made, the import finished already, its state records other
// inputs or another database). import --detach asks before it starts a
// process.
func Check(m *Manifest, id string, o Options) error {
	if err := o.Store.mkdir(); err != nil {
		return err
	}
	_, err := o.begin(m, id, nil)
	return err
}

// OtherDatabaseError refuses to run an import again (resume it, or run its
// id again) against another database than the one its state records: its
// finished inputs are in that one, not in this one. Options.Force runs it
// anyway, everything again.
type OtherDatabaseError struct {
	ID           string
	Recorded, DB pg.Identity
	FromExport   bool // the import of a bulk export, whose id is made for each database
}

func (e *OtherDatabaseError) Error() string {
	return fmt.Sprintf("import %q loaded into %s, not into %s", e.ID, e.Recorded, e.DB)
}

// FinishedError refuses to run a finished import again (Options.Force
// loads it all again).
type FinishedError struct{ ID string }

func (e *FinishedError) Error() string { return fmt.Sprintf("import %q finished already", e.ID) }

// OtherInputsError refuses to resume an import whose state records other
// inputs than the manifest lists (Options.Force starts it over).
type OtherInputsError struct{ ID string }

func (e *OtherInputsError) Error() string {
	return fmt.Sprintf("import %q recorded other inputs than this manifest lists", e.ID)
}

// begin makes the state to run: new, or the one of an import that did not
// finish, its finished inputs kept unless their whole URL changed.
func (o Options) begin(m *Manifest, id string, pull *PullState) (*State, error) {
	db := o.DB
	st := &State{
		ID: id, Status: StatusInProgress, Type: "aidbox",
		ContentEncoding: m.ContentEncoding, Update: m.Update, Manifest: m.Path, PID: os.Getpid(),
		Time: StateTime{Start: time.Now().UTC()}, Database: &db,
	}
	if o.fhir(m) {
		st.Type = "fhir"
	}
	st.ServerErrors = m.ServerErrors
	st.Pull = pull.clone()
	st.Inputs = make([]InputState, 0, len(m.all())) // [] in JSON, never null
	for i, in := range m.all() {
		s := InputState{ResourceType: in.ResourceType, URL: source.Redact(in.URL), URLHash: HashURL(in.URL), Status: StatusPending}
		if i >= len(m.Inputs) {
			s.Kind = KindDeleted
		}
		st.Inputs = append(st.Inputs, s)
	}
	prev, err := o.Store.Read(id)
	switch {
	case errors.Is(err, ErrUnknown) || (err == nil && o.Force):
		return st, nil
	case err != nil:
		return nil, err
	case prev.Database != nil && !prev.Database.Same(o.DB):
		return nil, &OtherDatabaseError{ID: id, Recorded: *prev.Database, DB: o.DB, FromExport: m.FromExport}
	case prev.Status == StatusFinished:
		return nil, &FinishedError{ID: id}
	case pull != nil && len(prev.Inputs) == 0:
		// A pull whose manifest just came: its files load for the first time.
		st.Time.Start = prev.Time.Start
		return st, nil
	case !sameInputs(m, prev):
		return nil, &OtherInputsError{ID: id}
	}
	// Resume: what finished stays finished, if it is still the same input;
	// everything else loads again.
	st.Time.Start = prev.Time.Start
	all := m.all()
	for i, was := range prev.Inputs {
		if was.Status == StatusFinished && unchanged(all[i], was) {
			was.URLHash = st.Inputs[i].URLHash
			st.Inputs[i] = was
		}
	}
	return st, nil
}

// runner is one run of an import. Its state changes under mu, and only
// marks itself unsaved and unshown; the ticker (and Run, at the start and
// the end) writes the state file and calls Progress.
type runner struct {
	o         Options
	m         *Manifest
	write     func(st *State) error
	saveEvery time.Duration

	mu               sync.Mutex
	st               *State
	unsaved, unshown bool // st changed since the state file was written, since Progress was called
}

// update changes input i.
func (r *runner) update(i int, f func(in *InputState)) {
	r.mu.Lock()
	f(&r.st.Inputs[i])
	r.unsaved, r.unshown = true, true
	r.mu.Unlock()
}

// tick writes the state file and calls Progress while inputs load, until
// stop is closed.
func (r *runner) tick(stop <-chan struct{}) {
	save := time.NewTicker(r.saveEvery)
	defer save.Stop()
	var show <-chan time.Time
	if r.o.Progress != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		show = t.C
	}
	for {
		select {
		case <-save.C:
			if err := r.save(false); err != nil && r.o.Warn != nil {
				r.o.Warn(err) // progress is lost, not data: go on
			}
		case <-show:
			r.show(false)
		case <-stop:
			return
		}
	}
}

// save writes the state file if the state changed since it was last
// written, or if force. The JSON is made and written outside the lock, from
// a copy, so that workers do not wait on the disk.
func (r *runner) save(force bool) error {
	r.mu.Lock()
	if !r.unsaved && !force {
		r.mu.Unlock()
		return nil
	}
	st := r.st.clone()
	r.unsaved = false
	r.mu.Unlock()
	if err := r.write(&st); err != nil {
		r.mu.Lock()
		r.unsaved = true
		r.mu.Unlock()
		return err
	}
	return nil
}

// show calls Progress if the state changed since it was last called, or
// if force.
func (r *runner) show(force bool) {
	if r.o.Progress == nil {
		return
	}
	r.mu.Lock()
	if !r.unshown && !force {
		r.mu.Unlock()
		return
	}
	st := r.st.clone()
	r.unshown = false
	r.mu.Unlock()
	r.o.Progress(st)
}

func (r *runner) worker(ctx context.Context, jobs <-chan int) {
	var conn *connection
	defer func() { conn.close() }()
	for i := range jobs {
		if ctx.Err() != nil {
			continue
		}
		in := r.m.Inputs[i]
		start := time.Now()
		r.update(i, func(s *InputState) {
			*s = s.pending()
			s.Status = StatusInProgress
		})
		res, err := r.loadInput(ctx, &conn, in, i)
		if err == nil && len(res.Skipped) > 0 {
			err = r.writeSkipped(i, res.Skipped)
		}
		r.update(i, func(s *InputState) {
			s.Duration, s.Storing = time.Since(start).Milliseconds(), false
			switch {
			case err == nil:
				s.Status, s.Total, s.Error = StatusFinished, res.Counts.Total(), ""
				s.Skipped = int64(len(res.Skipped))
			case ctx.Err() != nil:
				s.Status = StatusPending // rolled back: loads again on resume
			default:
				s.fail(err)
				if r.o.failed != nil {
					r.o.failed(err)
				}
			}
		})
	}
}

// connection is a worker's database connection, opened on its first input.
type connection struct {
	loader *load.Loader
	layout *store.Layout
}

func (c *connection) close() {
	if c == nil {
		return
	}
	c.layout.Close()
	c.loader.Conn.Close(context.Background())
}

func (r *runner) loadInput(ctx context.Context, cp **connection, in Input, i int) (load.Result, error) {
	if err := r.connect(ctx, cp); err != nil {
		return load.Result{}, err
	}
	l := (*cp).loader
	l.Opts = load.Options{Type: in.ResourceType, FHIR: r.o.fhir(r.m), History: r.m.Update, MaxLineSize: r.o.MaxLineSize,
		MaxErrors: r.o.MaxErrors, PreserveMeta: r.o.PreserveMeta, ExpectCount: in.Count,
		FormatCheck: r.o.FormatCheck, FormatHint: r.o.FormatHint, Words: r.o.Words}
	l.Progress = func(e load.Event) {
		if e.Phase != load.Reading && e.Phase != load.Storing {
			return
		}
		r.update(i, func(s *InputState) {
			s.Total, s.BytesRead, s.BytesTotal = e.Lines, e.BytesRead, max(e.Size, 0)
			s.Storing = e.Phase == load.Storing
		})
	}
	res, err := l.LoadSource(ctx, in.URL, r.o.Source)
	var se *load.SourceError
	if errors.As(err, &se) {
		err = se.Err // the state names the input already: keep the reason
	}
	return res, err
}

// connect opens a worker's connection, or opens it again after it was
// lost. It must reach the database the import started on: a connection
// string can name several hosts, or a name that moves to another server.
func (r *runner) connect(ctx context.Context, cp **connection) error {
	if *cp != nil && !(*cp).loader.Conn.IsClosed() {
		return nil
	}
	conn, err := pg.Connect(ctx, r.o.DSN)
	if err != nil {
		return err
	}
	db, err := pg.ReadIdentity(ctx, conn)
	if err == nil && !db.Same(r.o.DB) {
		err = fmt.Errorf("connected to %s, not to %s where the import started", db, r.o.DB)
	}
	if err != nil {
		conn.Close(context.Background()) // the error says why
		return err
	}
	*cp = &connection{loader: &load.Loader{Conn: conn}, layout: &store.Layout{DSN: r.o.DSN}}
	(*cp).loader.Layout = (*cp).layout
	return nil
}

// fhir reports whether the inputs are FHIR format: as the flags force, else
// as the manifest says.
func (o Options) fhir(m *Manifest) bool {
	switch {
	case o.FHIR:
		return true
	case o.Aidbox:
		return false
	}
	return m.FHIR
}

// writeSkipped writes the lines input i skipped into its errors file in
// the state folder, as OperationOutcome ndjson.
func (r *runner) writeSkipped(i int, bad []load.BadLine) error {
	var b bytes.Buffer
	w := bulkdata.NewErrorsWriter(&b)
	for _, l := range bad {
		w.BadLine(l.Source, l.Line, l.ID, l.Reason) // a bytes.Buffer takes all
	}
	return r.o.Store.WriteErrors(r.st.ID, i, b.Bytes())
}

// deletions applies the deletions inputs, one after another on one
// connection, once every other input has finished.
func (r *runner) deletions(ctx context.Context) {
	r.mu.Lock()
	ready := true
	var todo []int
	for i, in := range r.st.Inputs {
		switch {
		case in.Kind != KindDeleted && in.Status != StatusFinished:
			ready = false
		case in.Kind == KindDeleted && in.Status != StatusFinished:
			todo = append(todo, i)
		}
	}
	r.mu.Unlock()
	if !ready || len(todo) == 0 {
		return
	}
	var conn *connection
	defer func() { conn.close() }()
	all := r.m.all()
	for _, i := range todo {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		r.update(i, func(s *InputState) {
			*s = s.pending()
			s.Status = StatusInProgress
		})
		var d load.Deletions
		err := r.connect(ctx, &conn)
		if err == nil {
			// A deletion keeps the source's txid and time as a resource
			// does (PreserveMeta); the file must hold what the manifest
			// counts; bad lines are skipped as in the other inputs.
			conn.loader.Opts = load.Options{MaxLineSize: r.o.MaxLineSize, MaxErrors: r.o.MaxErrors,
				PreserveMeta: r.o.PreserveMeta, ExpectCount: all[i].Count, Words: r.o.Words}
			d, err = conn.loader.DeleteSource(ctx, all[i].URL, r.o.Source)
			var se *load.SourceError
			if errors.As(err, &se) {
				err = se.Err
			}
		}
		if err == nil && len(d.Skipped) > 0 {
			err = r.writeSkipped(i, d.Skipped)
		}
		r.update(i, func(s *InputState) {
			s.Duration = time.Since(start).Milliseconds()
			switch {
			case err == nil:
				s.Status, s.Error = StatusFinished, ""
				s.Deleted, s.Absent = d.Deleted.Total(), d.Absent.Total()
				s.Total, s.Skipped = s.Deleted+s.Absent, int64(len(d.Skipped))
			case ctx.Err() != nil:
				s.Status = StatusPending
			default:
				s.fail(err)
				if r.o.failed != nil {
					r.o.failed(err)
				}
			}
		})
		if err != nil {
			return // the deletions after it wait: their order matters
		}
	}
}
