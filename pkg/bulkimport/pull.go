package bulkimport

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bucket"
	"github.com/fhirbulk/fhirbulk/pkg/bulkclient"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// A pull is an import straight from a FHIR server's Bulk Data $export: the
// kick-off, the polling of its status URL, then every file of its manifest
// loaded as an import's inputs are, streamed from the server; when all is
// in, the server's job is released (DELETE). Each step is recorded before
// the next begins, so that a pull interrupted at any point (Ctrl-C, kill
// -9) goes on from there when it runs again: polling the same job, or
// loading the files that are not in yet, never kicking off a second
// export.
//
// Two files of the state folder hold it: the import's state file (ID.json,
// what status shows; its Pull part says where the pull stands, every URL
// redacted) and the pull's record (ID.pull, JSON, read only to resume it:
// the kick-off request, the status URL and the manifest as the server gave
// them, and how to authenticate: the paths of the key or token file and
// the client id, never a secret itself).

// Pull phases (PullState.Phase).
const (
	PhaseKickOff   = "kick-off"  // asking the server to start
	PhaseExport    = "export"    // the server exports; polling its status
	PhaseDownload  = "download"  // loading the manifest's files
	PhaseDone      = "done"      // every file in, the server's job released
	PhaseExpired   = "expired"   // the server no longer has the export
	PhaseFailed    = "failed"    // the server refused or failed the export
	PhaseCancelled = "cancelled" // cancelled (status --cancel)
)

// StatusCancelled is a pull cancelled at the server (status --cancel).
const StatusCancelled = "cancelled"

// PullState is what an import's state says of its pull.
type PullState struct {
	KickOff   string     `json:"kickOff"` // redacted
	Method    string     `json:"method"`
	Params    []string   `json:"params,omitempty"` // name=value, as sent
	Key       string     `json:"key"`              // what --since last matches (see selectionKey)
	Phase     string     `json:"phase"`
	Progress  string     `json:"progress,omitempty"` // the server's X-Progress
	Polls     int        `json:"polls,omitempty"`
	StatusURL string     `json:"statusUrl,omitempty"` // redacted
	KickedOff *time.Time `json:"kickedOff,omitempty"`
	// TransactionTime is the manifest's: the next pull's _since.
	TransactionTime string     `json:"transactionTime,omitempty"`
	Expires         *time.Time `json:"expires,omitempty"` // the server keeps the files until then
	Released        bool       `json:"released,omitempty"`
	// ServerErrors are the server's error files (OperationOutcome ndjson),
	// saved in the state folder: their paths and line counts.
	ServerErrors []bulkdata.File `json:"serverErrors,omitempty"`
	Error        string          `json:"error,omitempty"` // why the pull failed, before or after its files
}

func (p *PullState) clone() *PullState {
	if p == nil {
		return nil
	}
	cp := *p
	cp.Params = append([]string(nil), p.Params...)
	cp.ServerErrors = append([]bulkdata.File(nil), p.ServerErrors...)
	return &cp
}

// PullAuth is how a pull authenticates, as recorded to resume it: never a
// secret, only where to find it.
type PullAuth struct {
	ClientID   string `json:"clientId,omitempty"`
	PrivateKey string `json:"privateKey,omitempty"` // the key file's absolute path
	KeyID      string `json:"keyId,omitempty"`
	Scope      string `json:"scope,omitempty"`
	TokenURL   string `json:"tokenUrl,omitempty"`
	BearerFile string `json:"bearerTokenFile,omitempty"` // absolute path
	// BasicUser is the user of basic auth (user:password in the URL); the
	// password is never recorded: it comes from Options.Password.
	BasicUser string `json:"basicUser,omitempty"`
}

// PullRequest is a pull to start.
type PullRequest struct {
	KickOff    bulkclient.Request
	Auth       PullAuth
	SinceLast  bool // _since = the transactionTime of the last pull of the same selection
	KeepExport bool // no DELETE of the server's job at the end
	Timeout    time.Duration
}

// pullRecord is ID.pull.
type pullRecord struct {
	Request    bulkclient.Request `json:"request"`
	Auth       PullAuth           `json:"auth"`
	Key        string             `json:"key"`
	KeepExport bool               `json:"keepExport,omitempty"`
	Timeout    time.Duration      `json:"timeout"`
	// SinceLast: asked with --since last; only such a pull (or one of
	// everything) moves the mark on (see mayMark).
	SinceLast bool `json:"sinceLast,omitempty"`
	// KickOffSent is when a kick-off was sent whose answer is not recorded
	// yet: a pull killed in between may have left an export at the server.
	KickOffSent time.Time       `json:"kickOffSent,omitzero"`
	KickedOff   time.Time       `json:"kickedOff,omitzero"`
	StatusURL   string          `json:"statusUrl,omitempty"`
	Manifest    json.RawMessage `json:"manifest,omitempty"`
	Expires     time.Time       `json:"expires,omitzero"`
}

// PullPlan is a pull ready to run: new, or one that did not finish.
type PullPlan struct {
	ID      string
	Resumed bool   // an unfinished pull of the same request, going on
	Since   string // the _since --since last found ("" for none)
	rec     *pullRecord
}

// Record writes the plan's record, so that a detached child can resume
// it by its id.
func (p *PullPlan) Record(s Store) error { return s.writeRecord(p.ID, p.rec) }

func (s Store) recordPath(id string) string { return filepath.Join(s.Dir, id+".pull") }

func (s Store) writeRecord(id string, rec *pullRecord) error {
	if err := s.mkdir(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(s.recordPath(id), append(data, '\n'), 0o600); err != nil {
		return fsutil.FileError("state file", s.recordPath(id), err)
	}
	return nil
}

func (s Store) readRecord(id string) (*pullRecord, error) {
	data, err := readStateFile(s.recordPath(id), 4*bulkdata.MaxFileSize)
	if err != nil {
		return nil, err
	}
	rec := &pullRecord{}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("state file %s: %v", s.recordPath(id), err)
	}
	return rec, nil
}

// IsPull reports whether import id is a pull from a server.
func (s Store) IsPull(id string) bool {
	_, err := os.Lstat(s.recordPath(id))
	return err == nil
}

// selectionKey names what a pull selects from which server, for which
// database: the kick-off URL and every parameter but _since, _until and
// the output format. --since last takes the transactionTime of the last
// pull of the same key.
func selectionKey(req bulkclient.Request, db pg.Identity) string {
	var params []string
	for _, p := range req.Params {
		switch p.Name {
		case "_since", "_until", "_outputFormat":
			continue
		}
		params = append(params, p.Name+"="+p.Value)
	}
	sort.Strings(params)
	sum := sha256.Sum256([]byte(db.Key() + "\n" + req.URL + "\n" + strings.Join(params, "\n")))
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// PlanPull settles the pull to run for req into db: an unfinished pull of
// the same request (the same selection, not expired, failed at the server
// or cancelled) goes on under its own id, without a new kick-off; else a
// new one, whose _since is, with SinceLast, the transactionTime of the
// last pull of the same selection into db (none the first time: all).
func (s Store) PlanPull(req PullRequest, db pg.Identity, now time.Time) (*PullPlan, error) {
	key := selectionKey(req.KickOff, db)
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	for i := len(list) - 1; i >= 0; i-- {
		st := list[i]
		if st.Pull == nil || st.Pull.Key != key || !resumable(st) {
			continue
		}
		rec, err := s.readRecord(st.ID)
		if err != nil || req.SinceLast != rec.SinceLast || (!req.SinceLast && !sameRequest(rec.Request, req.KickOff)) {
			continue
		}
		if s.Running(st.ID) {
			return nil, fmt.Errorf("import %q %w: it pulls the same export", st.ID, ErrRunning)
		}
		// How to authenticate, how long to wait and whether to release the
		// export are the command's that runs now.
		rec.Auth, rec.Timeout, rec.KeepExport = req.Auth, req.Timeout, req.KeepExport
		return &PullPlan{ID: st.ID, Resumed: true, rec: rec}, nil
	}
	kick := req.KickOff
	kick.Params = append([]bulkclient.Param(nil), kick.Params...)
	plan := &PullPlan{ID: NewID(now)}
	if req.SinceLast {
		last, err := s.lastPull(key)
		if err != nil {
			return nil, err
		}
		if last != "" {
			kick.Params = append([]bulkclient.Param{{Name: "_since", Value: last}}, kick.Params...)
			plan.Since = last
		}
	}
	plan.rec = &pullRecord{Request: kick, Auth: req.Auth, Key: key, KeepExport: req.KeepExport, Timeout: req.Timeout, SinceLast: req.SinceLast}
	return plan, nil
}

// ResumePull is the plan of pull id as recorded (import --resume ID);
// auth, when not zero, replaces the recorded way to authenticate, and the
// options given (timeout when positive) replace the recorded ones.
func (s Store) ResumePull(id string, auth PullAuth, timeout time.Duration, keepExport bool) (*PullPlan, error) {
	rec, err := s.readRecord(id)
	if err != nil {
		return nil, err
	}
	st, err := s.Read(id)
	switch {
	case errors.Is(err, ErrUnknown): // recorded, not started (a detached child's start)
		st = &State{ID: id}
	case err != nil:
		return nil, err
	}
	switch {
	case st.Status == StatusCancelled:
		return nil, fmt.Errorf("import %q was cancelled at the server: start a new pull (fhirbulk import URL)", id)
	case st.Pull != nil && (st.Pull.Phase == PhaseExpired || st.Pull.Phase == PhaseFailed):
		return nil, fmt.Errorf("import %q cannot go on: %s; start a new pull (fhirbulk import URL)", id, st.Pull.Error)
	}
	if auth != (PullAuth{}) {
		rec.Auth = auth
	}
	if timeout > 0 {
		rec.Timeout = timeout
	}
	rec.KeepExport = rec.KeepExport || keepExport
	return &PullPlan{ID: id, Resumed: true, rec: rec}, nil
}

// resumable reports whether a pull's state lets it go on.
func resumable(st *State) bool {
	switch {
	case st.Status == StatusFinished:
		return st.Pull.Phase != PhaseDone // its files are in; the release and the mark are not
	case st.Status == StatusCancelled:
		return false
	case st.Pull.Phase == PhaseExpired || st.Pull.Phase == PhaseFailed || st.Pull.Phase == PhaseCancelled:
		return false
	}
	return true
}

func sameRequest(a, b bulkclient.Request) bool {
	if a.URL != b.URL || a.Post != b.Post || a.Lenient != b.Lenient || len(a.Params) != len(b.Params) {
		return false
	}
	for i := range a.Params {
		if a.Params[i] != b.Params[i] {
			return false
		}
	}
	return true
}

// mayMark says why the finished pull st may not move the mark of its
// selection on ("" when it may): the mark is where the next --since last
// starts, so it moves only past what is surely in. A pull with _until
// stops short of its transactionTime; one with a _since later than the
// mark (or with no mark yet) leaves a gap before it; one whose files
// skipped lines (--max-errors), or whose server listed errors (not mere
// warnings), lacks resources it was to bring.
func (s Store) mayMark(rec *pullRecord, st *State, doc *bulkdata.Manifest) string {
	if doc.TransactionTime == "" {
		return "the manifest has no transactionTime"
	}
	var since string
	for _, p := range rec.Request.Params {
		switch p.Name {
		case "_until":
			return "it was asked with _until"
		case "_since":
			since = p.Value
		}
	}
	if since != "" {
		last, err := s.lastPull(rec.Key)
		if err != nil {
			return err.Error()
		}
		at, err1 := time.Parse(time.RFC3339Nano, since)
		mark, err2 := time.Parse(time.RFC3339Nano, last)
		if last == "" || err1 != nil || err2 != nil || at.After(mark) {
			return "it was asked with a _since after the last mark"
		}
	}
	for _, in := range st.Inputs {
		if in.Skipped > 0 {
			return "lines of its files were skipped (--max-errors)"
		}
	}
	if st.Pull != nil {
		for _, f := range st.Pull.ServerErrors {
			if failures(f.URL) {
				return "the server's error files name resources it could not export (severity error or fatal)"
			}
		}
	}
	return ""
}

// failures reports whether a saved error file of the server holds an
// issue of severity error or fatal (warnings and information, such as a
// lenient server's note on a parameter it ignored, lose nothing), or
// cannot be read.
func failures(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 64<<10))
	for {
		var oo struct {
			Issue []struct {
				Severity string `json:"severity"`
			} `json:"issue"`
		}
		err := dec.Decode(&oo)
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true
		}
		for _, is := range oo.Issue {
			if is.Severity != "warning" && is.Severity != "information" {
				return true
			}
		}
	}
}

// pullsFile remembers, per selection key, the last pull that finished.
const pullsFile = ".pulls.json"

type pullMark struct {
	TransactionTime string    `json:"transactionTime"`
	Import          string    `json:"import"`
	KickOff         string    `json:"kickOff"` // redacted, for people
	Time            time.Time `json:"time"`
}

func (s Store) readPulls() (map[string]pullMark, error) {
	marks := map[string]pullMark{}
	path := filepath.Join(s.Dir, pullsFile)
	data, err := readStateFile(path, bulkdata.MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return marks, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &marks); err != nil {
		return nil, fmt.Errorf("state file %s: %v (delete it, and the next --since last pulls everything)", path, err)
	}
	return marks, nil
}

// lastPull is the transactionTime of the last finished pull of key.
func (s Store) lastPull(key string) (string, error) {
	marks, err := s.readPulls()
	if err != nil {
		return "", err
	}
	return marks[key].TransactionTime, nil
}

// markPull records a finished pull for the next --since last.
func (s Store) markPull(key string, m pullMark) error {
	unlock, err := s.lockNamed(".pulls.lock")
	if err != nil {
		return err
	}
	defer unlock()
	marks, err := s.readPulls()
	if err != nil {
		return err
	}
	marks[key] = m
	data, err := json.MarshalIndent(marks, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.Dir, pullsFile)
	if err := fsutil.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fsutil.FileError("state file", path, err)
	}
	return nil
}

// PullOptions are what a pull needs besides the import's Options.
type PullOptions struct {
	// Password is basic auth's password (the URL's), never recorded.
	Password string
	// Auth opens the way to authenticate that a record names (the key
	// file read, the token endpoint found); nil: none but basic auth.
	Auth func(ctx context.Context, a PullAuth, base string) (bulkclient.Auth, error)
	// Transport is the HTTP transport under everything (tests; default
	// http.DefaultTransport).
	Transport http.RoundTripper
	// Client tunes the protocol client (tests).
	Client func(c *bulkclient.Client)
}

// PasswordError is a pull that needs basic auth's password, which is never
// recorded, to go on.
type PasswordError struct{ ID, User string }

func (e *PasswordError) Error() string {
	return fmt.Sprintf("import %q logs in as %q with a password, which is not kept: give the URL with it again (fhirbulk import URL goes on with the same pull), or set FHIRBULK_PULL_PASSWORD", e.ID, e.User)
}

// PullError is a pull that failed as a whole (before its files, or its
// export gone): what Pull returns besides the state that records it.
type PullError struct {
	ID      string
	Err     error
	Expired bool
	NoAuth  bool // the pull sent no credentials
}

func (e *PullError) Error() string { return e.Err.Error() }
func (e *PullError) Unwrap() error { return e.Err }

// auth opens the plan's way to authenticate.
func (p *PullPlan) auth(ctx context.Context, po PullOptions) (bulkclient.Auth, error) {
	a := p.rec.Auth
	switch {
	case a.BasicUser != "":
		if po.Password == "" {
			return nil, &PasswordError{ID: p.ID, User: a.BasicUser}
		}
		return bulkclient.Basic(a.BasicUser, po.Password), nil
	case a == PullAuth{} || po.Auth == nil:
		return nil, nil
	}
	return po.Auth(ctx, a, bulkclient.Base(p.rec.Request.URL))
}

// Pull runs the pull of plan: kick-off (unless it was done), polling,
// then the files as Run loads inputs, then the DELETE. It fails without a
// state only as Run does (the lock, the state folder); a pull that failed
// as a whole is a *PullError with its state, which records why.
func Pull(ctx context.Context, plan *PullPlan, o Options, po PullOptions) (*State, error) {
	if o.DB == (pg.Identity{}) {
		db, err := Identify(ctx, o.DSN)
		if err != nil {
			return nil, err
		}
		o.DB = db
	}
	rec := plan.rec
	if rec.Auth.BasicUser != "" && po.Password == "" {
		return nil, &PasswordError{ID: plan.ID, User: rec.Auth.BasicUser}
	}
	lock, err := o.Store.Lock(plan.ID)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	p := &puller{o: o, po: po, plan: plan, rec: rec, write: o.Store.Write}
	if o.writeState != nil {
		p.write = o.writeState
	}
	if err := p.begin(); err != nil {
		return nil, err
	}
	if err := o.Store.writeRecord(plan.ID, rec); err != nil {
		return nil, err
	}
	p.show()
	if err := p.save(); err != nil {
		return nil, err
	}

	auth, err := plan.auth(ctx, po)
	if err != nil {
		// The export, if kicked off, is still there: the pull can go on
		// once the key or the token endpoint is right.
		return p.fail(ctx, err, "")
	}
	client := bulkclient.New(auth, po.Transport, rec.Request.URL)
	if rec.StatusURL != "" {
		client.Transport.Trust(rec.StatusURL)
	}
	if rec.Timeout > 0 {
		client.Timeout = rec.Timeout
	}
	if po.Client != nil {
		po.Client(client)
	}
	if p.finishing {
		// Its files are in (a kill came before the rest): release, mark.
		_, doc, err := pullManifest(rec)
		if err != nil {
			return p.fail(ctx, err, PhaseFailed)
		}
		return p.finish(ctx, client, doc, p.st)
	}
	if rec.StatusURL == "" {
		if !rec.KickOffSent.IsZero() && o.Warn != nil {
			o.Warn(fmt.Errorf("import %s: its kick-off at %s got no recorded answer (the process was killed): an export the server may have started then is left there", plan.ID, rec.KickOffSent.Format(time.RFC3339)))
		}
		p.phase(PhaseKickOff)
		start := time.Now().UTC()
		rec.KickOffSent = start
		if err := o.Store.writeRecord(plan.ID, rec); err != nil {
			return nil, err
		}
		status, err := client.KickOff(ctx, rec.Request)
		if err != nil {
			return p.fail(ctx, err, PhaseFailed)
		}
		rec.StatusURL, rec.KickedOff, rec.KickOffSent = status, start, time.Time{}
		if err := o.Store.writeRecord(plan.ID, rec); err != nil {
			// Unrecorded, the job could not be resumed: release it.
			client.Cancel(context.WithoutCancel(ctx), status)
			return nil, err
		}
		p.update(func(ps *PullState) { ps.StatusURL, ps.KickedOff = source.Redact(status), &start })
	}
	if rec.Manifest == nil {
		p.phase(PhaseExport)
		done, err := client.Poll(ctx, rec.StatusURL, rec.KickedOff, func(pr bulkclient.Progress) {
			p.update(func(ps *PullState) { ps.Progress, ps.Polls = pr.Text, ps.Polls+1 })
			p.show()
			if err := p.save(); err != nil && o.Warn != nil {
				o.Warn(err)
			}
		})
		if err != nil {
			// Only the server's word ends the export for good: expired, or
			// failed. A refused token, a network down, a timeout leave it
			// there, to be polled again when the pull runs again.
			phase := ""
			var be *bulkclient.Error
			switch {
			case errors.Is(err, bulkclient.ErrExpired):
				phase = PhaseExpired
			case errors.As(err, &be) && be.JobFailed:
				phase = PhaseFailed
			}
			return p.fail(ctx, err, phase)
		}
		rec.Manifest, rec.Expires = done.Raw, done.Expires
		if err := o.Store.writeRecord(plan.ID, rec); err != nil {
			return nil, err
		}
	}
	m, doc, err := pullManifest(rec)
	if err != nil {
		return p.fail(ctx, err, PhaseFailed)
	}
	p.update(func(ps *PullState) {
		ps.TransactionTime = doc.TransactionTime
		if !rec.Expires.IsZero() {
			t := rec.Expires.UTC()
			ps.Expires = &t
		}
	})

	files := bulkclient.New(nil, po.Transport)
	if doc.RequiresAccessToken {
		files = bulkclient.New(auth, po.Transport)
		for _, in := range m.all() {
			files.Transport.Trust(in.URL)
		}
		for _, f := range doc.Error {
			files.Transport.Trust(f.URL)
		}
	}
	if err := p.serverErrors(ctx, doc, files.HTTP); err != nil {
		return p.fail(ctx, err, PhaseFailed)
	}

	p.phase(PhaseDownload)
	o.Source.Client = files.HTTP
	var gone error
	o.failed = func(err error) {
		if c := source.HTTPStatus(err); c == http.StatusNotFound || c == http.StatusGone {
			gone = err
		}
	}
	p.mu.Lock()
	pull := p.st.Pull.clone()
	p.mu.Unlock()
	st, err := o.run(ctx, m, plan.ID, pull)
	if err != nil {
		return nil, err
	}
	p.st = st
	switch {
	case gone != nil && st.Status == StatusFailed:
		return p.fail(ctx, fmt.Errorf("%w: a file answered %w", bulkclient.ErrExpired, gone), PhaseExpired)
	case st.Status != StatusFinished:
		return st, nil
	}
	return p.finish(ctx, client, doc, st)
}

// finish ends a pull whose files are all in: the server's export released
// (unless kept), the mark for --since last moved on where it may be.
func (p *puller) finish(ctx context.Context, client *bulkclient.Client, doc *bulkdata.Manifest, st *State) (*State, error) {
	o, rec, plan := p.o, p.rec, p.plan
	if !rec.KeepExport {
		if err := client.Cancel(ctx, rec.StatusURL); err != nil {
			if o.Warn != nil {
				o.Warn(fmt.Errorf("the export is in; releasing it at the server failed: %w", err))
			}
		} else {
			st.Pull.Released = true
		}
	}
	st.Pull.Phase = PhaseDone
	if why := o.Store.mayMark(rec, st, doc); why != "" {
		if o.Warn != nil && rec.SinceLast {
			o.Warn(fmt.Errorf("import %s: %s, so the next --since last asks again from where this one did", plan.ID, why))
		}
	} else if err := o.Store.markPull(rec.Key, pullMark{TransactionTime: doc.TransactionTime, Import: plan.ID,
		KickOff: source.Redact(rec.Request.URL), Time: time.Now().UTC()}); err != nil && o.Warn != nil {
		o.Warn(fmt.Errorf("%w (the next --since last pulls from the pull before this one)", err))
	}
	if o.Progress != nil {
		o.Progress(st.clone())
	}
	return st, o.Store.Write(st)
}

// puller is a pull's state before its files load (then Run's runner
// keeps it).
type puller struct {
	o     Options
	po    PullOptions
	plan  *PullPlan
	rec   *pullRecord
	write func(*State) error

	mu        sync.Mutex
	st        *State
	finishing bool // its files are all in: only the release and the mark are left
}

// begin makes the pull's state: new, or the one it had.
func (p *puller) begin() error {
	rec := p.rec
	db := p.o.DB
	var params []string
	for _, pr := range rec.Request.Params {
		params = append(params, pr.Name+"="+pr.Value)
	}
	method := http.MethodGet
	if rec.Request.Post {
		method = http.MethodPost
	}
	st := &State{ID: p.plan.ID, Status: StatusInProgress, Type: "fhir", PID: os.Getpid(), Time: StateTime{Start: time.Now().UTC()},
		Database: &db, Inputs: []InputState{},
		Pull: &PullState{KickOff: source.Redact(rec.Request.URL), Method: method, Params: params, Key: rec.Key, Phase: PhaseKickOff}}
	if rec.StatusURL != "" {
		t := rec.KickedOff
		st.Pull.StatusURL, st.Pull.KickedOff, st.Pull.Phase = source.Redact(rec.StatusURL), &t, PhaseExport
	}
	prev, err := p.o.Store.Read(p.plan.ID)
	switch {
	case errors.Is(err, ErrUnknown):
	case err != nil:
		return err
	case prev.Database != nil && !prev.Database.Same(p.o.DB):
		return &OtherDatabaseError{ID: p.plan.ID, Recorded: *prev.Database, DB: p.o.DB}
	case prev.Status == StatusFinished && prev.Pull != nil && prev.Pull.Phase != PhaseDone:
		p.finishing = true
		p.st = prev
		return nil
	case prev.Status == StatusFinished && !p.o.Force:
		return &FinishedError{ID: p.plan.ID}
	default:
		st.Time.Start = prev.Time.Start
		if prev.Pull != nil {
			st.Pull.Polls, st.Pull.Progress, st.Pull.ServerErrors = prev.Pull.Polls, prev.Pull.Progress, prev.Pull.ServerErrors
		}
		st.Inputs = append(st.Inputs, prev.Inputs...)
	}
	p.st = st
	return nil
}

func (p *puller) update(f func(ps *PullState)) {
	p.mu.Lock()
	f(p.st.Pull)
	p.mu.Unlock()
}

func (p *puller) phase(ph string) {
	p.update(func(ps *PullState) { ps.Phase = ph })
	p.show()
	if err := p.save(); err != nil && p.o.Warn != nil {
		p.o.Warn(err)
	}
}

func (p *puller) save() error {
	p.mu.Lock()
	st := p.st.clone()
	p.mu.Unlock()
	return p.write(&st)
}

func (p *puller) show() {
	if p.o.Progress == nil {
		return
	}
	p.mu.Lock()
	st := p.st.clone()
	p.mu.Unlock()
	p.o.Progress(st)
}

// fail ends the pull with err: interrupted when ctx ended (it goes on when
// run again), else failed, in phase (PhaseFailed, PhaseExpired: for good),
// or in the phase it was in ("": it can go on when run again).
func (p *puller) fail(ctx context.Context, err error, phase string) (*State, error) {
	p.mu.Lock()
	st := p.st
	if ctx.Err() != nil {
		st.Status = StatusInterrupted
	} else {
		now := time.Now().UTC()
		st.Status, st.Time.End = StatusFailed, &now
		st.Pull.Error = oneLine(err.Error())
		if phase != "" {
			st.Pull.Phase = phase
		}
	}
	p.mu.Unlock()
	p.show()
	if werr := p.save(); werr != nil && p.o.Warn != nil {
		p.o.Warn(werr)
	}
	if ctx.Err() != nil {
		return st, nil
	}
	return st, &PullError{ID: p.plan.ID, Err: err, Expired: phase == PhaseExpired, NoAuth: p.rec.Auth == PullAuth{}}
}

// serverErrors saves the server's error files in the state folder (once)
// and counts their lines.
func (p *puller) serverErrors(ctx context.Context, doc *bulkdata.Manifest, client *http.Client) error {
	if len(doc.Error) == 0 || len(p.st.Pull.ServerErrors) == len(doc.Error) {
		return nil
	}
	var saved []bulkdata.File
	for i, f := range doc.Error {
		path := filepath.Join(p.o.Store.Dir, fmt.Sprintf("%s.server-errors.%d.ndjson", p.plan.ID, i))
		opts := p.o.Source
		opts.Client = client
		n, err := saveSource(ctx, f.URL, path, opts)
		if err != nil {
			return fmt.Errorf("the server's error file %s: %w", source.Redact(f.URL), err)
		}
		saved = append(saved, bulkdata.File{Type: "OperationOutcome", URL: path, Count: &n})
	}
	p.update(func(ps *PullState) { ps.ServerErrors = saved })
	return nil
}

// saveSource copies what spec names into the file at path and counts its
// lines.
func saveSource(ctx context.Context, spec, path string, opts source.Options) (int64, error) {
	r, err := source.Open(ctx, spec, opts)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	f, tmp, unlock, err := fsutil.CreateTemp(path, 0o600)
	if err != nil {
		return 0, fsutil.FileError("state file", path, err)
	}
	defer unlock()
	defer os.Remove(tmp)
	lines := int64(0)
	br := bufio.NewReaderSize(r, 64<<10)
	w := bufio.NewWriterSize(f, 64<<10)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if chunk[len(chunk)-1] == '\n' || err == io.EOF {
				lines++
			}
			if _, werr := w.Write(chunk); werr != nil {
				f.Close()
				return 0, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			f.Close()
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return lines, os.Rename(tmp, path)
}

// pullManifest makes the inputs of a pull from the manifest the server
// gave: every output and deleted file a URL the server named: http(s), or
// a bucket's (a server may export to one). A file URL, a path or any other
// scheme is refused.
func pullManifest(rec *pullRecord) (*Manifest, *bulkdata.Manifest, error) {
	doc, err := bulkdata.ParseManifest(rec.Manifest)
	if err != nil {
		return nil, nil, manifestErr("%s", oneLine(err.Error()))
	}
	base, _ := url.Parse(rec.StatusURL)
	resolve := func(raw, at string) (string, error) {
		if bucket.Is(raw) {
			return raw, nil
		}
		u, err := base.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", manifestErr("%s.url %s: not an http(s) or bucket URL (the server's manifest may name no other)", at, source.Redact(raw))
		}
		return u.String(), nil
	}
	m := &Manifest{FHIR: true, Path: "", Dir: ""}
	if strings.Contains(strings.ToLower(doc.OutputFormat), "aidbox") {
		m.FHIR = false
	}
	for i, f := range doc.Output {
		at := fmt.Sprintf("output[%d]", i)
		if f.Type == "" {
			return nil, nil, manifestErr("%s has no type (an export organized by patient, which fhirbulk cannot load: ask without organizeOutputBy)", at)
		}
		if err := store.ValidateType(f.Type); err != nil {
			return nil, nil, manifestErr("%s.type: %v", at, err)
		}
		u, err := resolve(f.URL, at)
		if err != nil {
			return nil, nil, err
		}
		m.Inputs = append(m.Inputs, Input{ResourceType: f.Type, URL: u, Count: f.Count})
	}
	for i, f := range doc.Deleted {
		u, err := resolve(f.URL, fmt.Sprintf("deleted[%d]", i))
		if err != nil {
			return nil, nil, err
		}
		m.Deleted = append(m.Deleted, Input{ResourceType: "Bundle", URL: u, Count: f.Count})
	}
	for i := range doc.Error {
		u, err := resolve(doc.Error[i].URL, fmt.Sprintf("error[%d]", i))
		if err != nil {
			return nil, nil, err
		}
		doc.Error[i].URL = u
	}
	return m, doc, nil
}

// CancelPull cancels pull id at the server (DELETE on its status URL),
// after stopping the process that runs it, if one does (it is sent an
// interrupt and waited for); the state then says cancelled. What its
// files loaded so far stays loaded.
func CancelPull(ctx context.Context, s Store, id string, po PullOptions) (*State, error) {
	st, err := s.Read(id)
	if err != nil {
		return nil, err
	}
	if st.Pull == nil {
		return nil, fmt.Errorf("import %q is not a pull from a server: nothing to cancel there", id)
	}
	switch {
	case st.Status == StatusCancelled:
		return nil, fmt.Errorf("import %q was cancelled already", id)
	case st.Status == StatusFinished && st.Pull.Released:
		return nil, fmt.Errorf("import %q finished, and its export was released at the server: nothing to cancel", id)
	}
	if s.Running(id) {
		if err := stopProcess(ctx, s, id, st.PID); err != nil {
			return nil, err
		}
	}
	lock, err := s.Lock(id)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	rec, err := s.readRecord(id)
	if err != nil {
		return nil, err
	}
	if st, err = s.Read(id); err != nil {
		return nil, err
	}
	plan := &PullPlan{ID: id, rec: rec}
	if rec.StatusURL != "" {
		auth, err := plan.auth(ctx, po)
		if err != nil {
			return nil, err
		}
		client := bulkclient.New(auth, po.Transport, rec.Request.URL, rec.StatusURL)
		if err := client.Cancel(ctx, rec.StatusURL); err != nil {
			return nil, err
		}
	}
	if st.Status == StatusFinished {
		// Kept (--keep-export): now released; what it loaded stays finished.
		st.Pull.Released = true
		return st, s.Write(st)
	}
	now := time.Now().UTC()
	st.Status, st.Time.End, st.PID = StatusCancelled, &now, 0
	st.Pull.Phase, st.Pull.Released = PhaseCancelled, rec.StatusURL != ""
	for i, in := range st.Inputs {
		if in.Status == StatusInProgress {
			st.Inputs[i] = in.pending()
		}
	}
	return st, s.Write(st)
}

// stopProcess interrupts the process that runs import id and waits until
// its lock is free.
func stopProcess(ctx context.Context, s Store, id string, pid int) error {
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(os.Interrupt)
	}
	if err != nil {
		return fmt.Errorf("import %q runs (pid %d) and could not be interrupted: stop it first (%v)", id, pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.Running(id) {
		if time.Now().After(deadline) {
			return fmt.Errorf("import %q (pid %d) did not stop within 30s of an interrupt", id, pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
