package bulkimport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Options tune Run.
type Options struct {
	DSN      string
	Store    Store
	Parallel int  // inputs loaded at once (default 2)
	FHIR     bool // every input is FHIR format, whatever the manifest says
	Force    bool // load everything again, even a finished import
	// Progress, when set, is called with a copy of the state whenever it
	// changes (and every second while inputs load).
	Progress func(st State)
}

// saveEvery is how often the state file is rewritten while inputs load.
const saveEvery = time.Second

// Run runs (or resumes) import id of manifest m and returns its final state.
// It fails only when the import cannot start: another process runs it, it
// finished already (without Force), its state file records other inputs, or
// the state folder is not writable. Inputs that fail are recorded in the
// state, which then says failed.
func Run(ctx context.Context, m *Manifest, id string, o Options) (*State, error) {
	lock, err := o.Store.Lock(id)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	st, err := o.begin(m, id)
	if err != nil {
		return nil, err
	}
	r := &runner{st: st, o: o, m: m}
	if err := r.save(); err != nil {
		return nil, err
	}

	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(o.Parallel, 1) {
		wg.Go(func() { r.worker(ctx, jobs) })
	}
	stop := make(chan struct{})
	ticker := time.NewTicker(saveEvery)
	go func() {
		for {
			select {
			case <-ticker.C:
				r.saveQuietly()
			case <-stop:
				return
			}
		}
	}()
feed:
	for i, in := range st.Inputs {
		if in.Status == StatusFinished {
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
	ticker.Stop()
	close(stop)

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
			st.Inputs[i] = InputState{ResourceType: in.ResourceType, URL: in.URL, Status: StatusPending}
		}
	}
	if ctx.Err() != nil && st.Status != StatusFailed {
		st.Status = StatusInterrupted
		st.Time.End = nil
	}
	r.mu.Unlock()
	return st, r.save()
}

// begin makes the state to run: new, or the one of an import that did not
// finish, its finished inputs kept.
func (o Options) begin(m *Manifest, id string) (*State, error) {
	st := &State{
		ID: id, Status: StatusInProgress, Type: "aidbox",
		ContentEncoding: m.ContentEncoding, Update: m.Update, Manifest: m.Path, PID: os.Getpid(),
		Time: StateTime{Start: time.Now().UTC()},
	}
	if m.FHIR || o.FHIR {
		st.Type = "fhir"
	}
	for _, in := range m.Inputs {
		st.Inputs = append(st.Inputs, InputState{ResourceType: in.ResourceType, URL: source.Redact(in.URL), Status: StatusPending})
	}
	prev, err := o.Store.Read(id)
	switch {
	case errors.Is(err, ErrUnknown) || (err == nil && o.Force):
		return st, nil
	case err != nil:
		return nil, err
	case prev.Status == StatusFinished:
		return nil, fmt.Errorf("import %q finished already (use --force to load it all again)", id)
	case !sameInputs(m, prev):
		return nil, fmt.Errorf("import %q recorded other inputs than this manifest lists: give the manifest another id, or use --force", id)
	}
	// Resume: what finished stays finished; everything else loads again.
	st.Time.Start = prev.Time.Start
	for i, in := range prev.Inputs {
		if in.Status == StatusFinished {
			st.Inputs[i] = in
		}
	}
	return st, nil
}

type runner struct {
	mu sync.Mutex
	st *State
	o  Options
	m  *Manifest
}

// save writes the state file now. The caller must not hold mu.
func (r *runner) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveLocked()
}

func (r *runner) saveLocked() error {
	if r.o.Progress != nil {
		cp := *r.st
		cp.Inputs = append([]InputState(nil), r.st.Inputs...)
		r.o.Progress(cp)
	}
	return r.o.Store.Write(r.st)
}

func (r *runner) saveQuietly() {
	if err := r.save(); err != nil {
		fmt.Fprintln(os.Stderr, "fhirbulk:", err) // progress is lost, not data: go on
	}
}

// update changes input i under the lock and saves the state.
func (r *runner) update(i int, f func(in *InputState)) {
	r.mu.Lock()
	f(&r.st.Inputs[i])
	err := r.saveLocked()
	r.mu.Unlock()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fhirbulk:", err)
	}
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
			*s = InputState{ResourceType: s.ResourceType, URL: s.URL, Status: StatusInProgress}
		})
		counts, err := r.loadInput(ctx, &conn, in, i)
		r.update(i, func(s *InputState) {
			s.Duration = time.Since(start).Milliseconds()
			switch {
			case err == nil:
				s.Status, s.Total, s.Error = StatusFinished, counts.Total(), ""
			case ctx.Err() != nil:
				s.Status = StatusPending // rolled back: loads again on resume
			default:
				s.Status, s.Error = StatusFailed, oneLine(err.Error())
			}
		})
	}
}

// connection is a worker's database connection, opened on its first input.
type connection struct {
	loader *load.Loader
	layout *pg.Layout
}

func (c *connection) close() {
	if c == nil {
		return
	}
	c.layout.Close()
	c.loader.Conn.Close(context.Background()) //nolint:errcheck
}

func (r *runner) loadInput(ctx context.Context, cp **connection, in Input, i int) (load.Counts, error) {
	if *cp == nil || (*cp).loader.Conn.IsClosed() {
		conn, err := pg.Connect(ctx, r.o.DSN)
		if err != nil {
			return nil, err
		}
		*cp = &connection{loader: &load.Loader{Conn: conn}, layout: &pg.Layout{DSN: r.o.DSN}}
		(*cp).loader.Layout = (*cp).layout
	}
	l := (*cp).loader
	l.Opts = load.Options{Type: in.ResourceType, FHIR: r.m.FHIR || r.o.FHIR, History: r.m.Update}
	l.Progress = func(src *source.Reader, lines int64) {
		r.mu.Lock()
		s := &r.st.Inputs[i]
		s.Total, s.BytesRead, s.BytesTotal = lines, src.BytesRead(), max(src.Size(), 0)
		r.mu.Unlock()
	}
	counts, err := l.LoadSource(ctx, in.URL, source.Options{})
	if err != nil {
		// The message names the source already ("load URL: ..."): keep the reason.
		msg := err.Error()
		if rest, ok := strings.CutPrefix(msg, "load "+source.Redact(in.URL)+": "); ok {
			msg = rest
		}
		return nil, errors.New(msg)
	}
	return counts, nil
}
