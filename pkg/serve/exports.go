package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/export"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
)

// The jobs of the HL7 Bulk Data $export server. Each job is an export
// (pkg/export: one snapshot, parallel, the folder whole or not at all)
// into the server's own folder: Dir/ID.json is its record, Dir/ID/files
// its export. A record is written when the job starts and when it ends;
// a server killed while jobs ran finds them "running" when it starts
// again and fails them (their half-written folders removed), so that no
// client is ever served half an export. Finished jobs' files are removed
// TTL after they finished, by a sweep and when asked for.

// ExportConfig sets up the $export server.
type ExportConfig struct {
	Dir      string        // the jobs' folder, the server's own (locked while it runs)
	TTL      time.Duration // how long a finished export is kept; default 24h
	Max      int           // exports running at once (429 beyond); default 2
	Parallel int           // connections per export; default 2
	Base     string        // the FHIR base path of the endpoints; default /fhir
}

// Exports are the $export jobs of a server.
type Exports struct {
	cfg  ExportConfig
	lock *os.File
	log  *slog.Logger

	mu   sync.Mutex
	jobs map[string]*job
	wg   sync.WaitGroup // the jobs running
}

// Job statuses.
const (
	jobRunning   = "running"
	jobDone      = "done"
	jobFailed    = "failed"
	jobCancelled = "cancelled" // DELETE while it ran: removed at once
)

// record is what Dir/ID.json holds of a job.
type record struct {
	ID       string    `json:"id"`
	Owner    string    `json:"owner"`
	Request  string    `json:"request"` // the kick-off URL, for the manifest
	Level    string    `json:"level"`   // system, patient or group
	Group    string    `json:"group,omitempty"`
	Patients []string  `json:"patients,omitempty"`
	Types    []string  `json:"types,omitempty"`
	Since    string    `json:"since,omitempty"`
	Until    string    `json:"until,omitempty"`
	Elements []string  `json:"elements,omitempty"`
	Notes    []string  `json:"notes,omitempty"` // parameters ignored under handling=lenient
	Status   string    `json:"status"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	Expires  time.Time `json:"expires,omitzero"`
	Error    string    `json:"error,omitempty"`
}

type job struct {
	record
	cancel   context.CancelFunc
	done     chan struct{} // closed when the export ended
	rows     atomic.Int64
	estimate atomic.Int64
	manifest *bulkdata.Manifest // as written, once done
	names    map[string]bool    // the files it may serve
}

var jobID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// OpenExports takes the jobs' folder (creating it, mode 0700) and reads
// the jobs there: one still "running" was cut by a stop or a crash and is
// failed; expired ones and stray folders are removed.
func OpenExports(cfg ExportConfig, log *slog.Logger) (*Exports, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Max <= 0 {
		cfg.Max = 2
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 2
	}
	if cfg.Base == "" {
		cfg.Base = "/fhir"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := fsutil.LockFile(filepath.Join(cfg.Dir, ".lock"))
	if err != nil {
		if errors.Is(err, fsutil.ErrLocked) {
			return nil, fmt.Errorf("%s: another fhirbulk serve keeps its exports there (give this one its own --export-dir)", cfg.Dir)
		}
		return nil, err
	}
	x := &Exports{cfg: cfg, lock: lock, log: log, jobs: map[string]*job{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	now := time.Now()
	for _, e := range entries {
		name := e.Name()
		id, isRecord := strings.CutSuffix(name, ".json")
		switch {
		case isRecord && jobID.MatchString(id):
			x.recover(id, now)
		case e.IsDir() && jobID.MatchString(name):
			if _, err := os.Stat(x.recordPath(name)); errors.Is(err, os.ErrNotExist) {
				os.RemoveAll(filepath.Join(cfg.Dir, name)) // a job whose record never got written
			}
		}
	}
	return x, nil
}

// recover reads one job's record at start.
func (x *Exports) recover(id string, now time.Time) {
	data, err := os.ReadFile(x.recordPath(id))
	var rec record
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil || rec.ID != id {
		x.log.Warn("removed an unreadable export record", "id", id)
		x.remove(id)
		return
	}
	j := &job{record: rec, done: make(chan struct{})}
	close(j.done)
	switch {
	case rec.Status == jobRunning:
		// Cut by a stop or a crash: its folder is half written (or a
		// temporary one): failed, never served.
		os.RemoveAll(x.jobDir(id))
		j.Status, j.Error, j.Finished = jobFailed, "the server stopped while this export ran: kick it off again", now
		j.Expires = now.Add(x.cfg.TTL)
		if err := x.save(&j.record); err != nil {
			x.log.Warn("export record not written", "id", id, "error", err.Error())
		}
		x.log.Info("failed an export the server stopped while it ran", "id", id)
	case !rec.Expires.IsZero() && now.After(rec.Expires):
		x.remove(id)
		return
	case rec.Status == jobDone:
		if err := j.load(x.filesDir(id)); err != nil {
			x.log.Warn("removed an export whose manifest cannot be read", "id", id, "error", err.Error())
			x.remove(id)
			return
		}
	}
	x.jobs[id] = j
}

// Close releases the jobs' folder; the jobs must have ended (Stop).
func (x *Exports) Close() error { return x.lock.Close() }

func (x *Exports) recordPath(id string) string { return filepath.Join(x.cfg.Dir, id+".json") }
func (x *Exports) jobDir(id string) string     { return filepath.Join(x.cfg.Dir, id) }
func (x *Exports) filesDir(id string) string   { return filepath.Join(x.cfg.Dir, id, "files") }

// save writes a job's record.
func (x *Exports) save(r *record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(x.recordPath(r.ID), append(data, '\n'), 0o600)
}

// remove deletes a job's record, then its files (a crash between leaves
// files without a record, which the next start removes: never a record of
// a job that was removed).
func (x *Exports) remove(id string) {
	os.Remove(x.recordPath(id))
	os.RemoveAll(x.jobDir(id))
}

// load reads a finished job's manifest, and the names it may serve.
func (j *job) load(dir string) error {
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	j.manifest, j.names = m, map[string]bool{}
	for _, list := range [][]bulkdata.File{m.Output, m.Deleted, m.Error} {
		for _, f := range list {
			j.names[f.URL] = true
		}
	}
	return nil
}

// readManifest reads the manifest of the export in dir.
func readManifest(dir string) (*bulkdata.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, bulkdata.ManifestName))
	if err != nil {
		return nil, err
	}
	return bulkdata.ParseManifest(data)
}

// newID is a job's id: 128 random bits, which nobody guesses.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// errTooMany is a kick-off beyond Max running exports; errTooManyKept one
// of a caller who keeps MaxKeptPerCaller exports already.
var (
	errTooMany     = errors.New("too many exports running")
	errTooManyKept = errors.New("too many exports kept")
)

// MaxKeptPerCaller bounds the exports one caller keeps (running or
// finished, until DELETE or expiry): the disk one caller may take.
const MaxKeptPerCaller = 10

// start begins a job of rec with o (Types, Since, Until, Select set),
// unless Max run already.
func (x *Exports) start(ctx context.Context, rec record, o export.Options) (*job, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	running, kept := 0, 0
	for _, j := range x.jobs {
		select {
		case <-j.done:
		default: // running, or cancelled and not yet ended
			running++
		}
		if j.Owner == rec.Owner {
			kept++
		}
	}
	if running >= x.cfg.Max {
		return nil, errTooMany
	}
	if kept >= MaxKeptPerCaller {
		return nil, errTooManyKept
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	rec.ID, rec.Status, rec.Created = id, jobRunning, time.Now()
	if err := x.save(&rec); err != nil {
		return nil, err
	}
	if err := os.Mkdir(x.jobDir(id), 0o700); err != nil {
		x.remove(id)
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	j := &job{record: rec, cancel: cancel, done: make(chan struct{})}
	j.estimate.Store(-1)
	x.jobs[id] = j
	x.wg.Add(1)
	o.Parallel = x.cfg.Parallel
	o.FHIR = true
	o.SkipMissing = true
	o.Request = rec.Request
	o.Progress = func(p export.Progress) {
		j.rows.Store(p.Rows)
		j.estimate.Store(p.Estimate)
	}
	go x.run(ctx, j, o)
	return j, nil
}

// run does a job's export, and records how it ended.
func (x *Exports) run(ctx context.Context, j *job, o export.Options) {
	defer x.wg.Done()
	defer close(j.done)
	defer j.cancel()
	started := time.Now()
	_, err := export.Export(ctx, x.filesDir(j.ID), false, o)
	if err == nil && len(j.Notes) > 0 {
		err = writeNotes(x.filesDir(j.ID), j.Notes)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if j.Status == jobCancelled {
		return // DELETE removes it
	}
	now := time.Now()
	j.Finished, j.Expires = now, now.Add(x.cfg.TTL)
	switch {
	case err == nil:
		if err = j.load(x.filesDir(j.ID)); err == nil {
			j.Status = jobDone
			x.log.Info("export done", "id", j.ID, "owner", j.Owner, "rows", j.rows.Load(), "took", time.Since(started).Round(time.Millisecond).String())
		}
	}
	if err != nil {
		os.RemoveAll(x.jobDir(j.ID))
		// The client is not told the server's folders or database: the
		// log has the detail.
		x.log.Warn("export failed", "id", j.ID, "owner", j.Owner, "error", err.Error())
		j.Status, j.Error = jobFailed, "the server's log has why (export "+j.ID+")"
		if ctx.Err() != nil {
			j.Error = "the server stopped while this export ran: kick it off again"
		}
	}
	if err := x.save(&j.record); err != nil {
		x.log.Warn("export record not written", "id", j.ID, "error", err.Error())
	}
}

// notesName is the file of the notes a lenient kick-off gets (parameters
// it ignored): listed in the manifest's error, with severity information.
const notesName = "notes.ndjson"

func writeNotes(dir string, notes []string) error {
	var b []byte
	for _, n := range notes {
		b = append(b, outcomeLine("information", "not-supported", n)...)
	}
	if err := fsutil.WriteFile(filepath.Join(dir, notesName), b, 0o600); err != nil {
		return err
	}
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	count := int64(len(notes))
	m.Error = append(m.Error, bulkdata.File{Type: "OperationOutcome", URL: notesName, Count: &count})
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return fsutil.WriteFile(filepath.Join(dir, bulkdata.ManifestName), data, 0o600)
}

// get returns the job id of owner, with its record and manifest as they
// are now (nil when there is none, it is another's, it was deleted, or it
// expired: then it is removed).
func (x *Exports) get(id, owner string) (*job, record, *bulkdata.Manifest) {
	if !jobID.MatchString(id) {
		return nil, record{}, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	j := x.jobs[id]
	if j == nil || j.Owner != owner || j.Status == jobCancelled {
		return nil, record{}, nil
	}
	if !j.Expires.IsZero() && time.Now().After(j.Expires) {
		delete(x.jobs, id)
		x.remove(id)
		return nil, record{}, nil
	}
	return j, j.record, j.manifest
}

// snapshot is a job's record and manifest, read under the lock.
func (x *Exports) snapshot(j *job) (record, *bulkdata.Manifest) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return j.record, j.manifest
}

// cancel ends a job: a running one is cancelled (and waited for), a
// finished one's files removed. It is gone afterwards.
func (x *Exports) cancel(j *job) {
	x.mu.Lock()
	running := j.Status == jobRunning
	j.Status = jobCancelled
	x.mu.Unlock()
	if running {
		j.cancel()
		<-j.done
	}
	x.mu.Lock()
	delete(x.jobs, j.ID)
	x.mu.Unlock()
	// Gone for every request from now; the files (a GB takes a while to
	// unlink) go after the answer.
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		x.remove(j.ID)
		x.log.Info("export removed", "id", j.ID, "owner", j.Owner, "was", map[bool]string{true: "running", false: "finished"}[running])
	}()
}

// sweep removes the jobs that expired.
func (x *Exports) sweep(now time.Time) {
	x.mu.Lock()
	var gone []string
	for id, j := range x.jobs {
		if j.Status != jobRunning && !j.Expires.IsZero() && now.After(j.Expires) {
			delete(x.jobs, id)
			gone = append(gone, id)
		}
	}
	x.mu.Unlock()
	sort.Strings(gone)
	for _, id := range gone {
		x.remove(id)
		x.log.Info("export expired, its files removed", "id", id)
	}
}

// Sweep removes expired exports every so often until ctx ends.
func (x *Exports) Sweep(ctx context.Context) {
	every := min(max(x.cfg.TTL/4, 250*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			x.sweep(now)
		}
	}
}

// Wait waits for the running jobs to end (after their context ended).
func (x *Exports) Wait() { x.wg.Wait() }
