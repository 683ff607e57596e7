package serve

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkclient"
	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
	"github.com/fhirbulk/fhirbulk/pkg/compartment"
	"github.com/fhirbulk/fhirbulk/pkg/dump"
	"github.com/fhirbulk/fhirbulk/pkg/export"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// The HL7 Bulk Data Access endpoints, under the FHIR base (/fhir):
//
//	GET|POST [base]/$export, [base]/Patient/$export, [base]/Group/ID/$export
//	GET|DELETE [base]/$export-status/ID
//	GET [base]/$export-files/ID/NAME
//
// A kick-off is checked whole before a job starts (400 with an
// OperationOutcome for what the server does not do, unless the client
// prefers handling=lenient: then it is ignored and said in the manifest's
// error); the job is an export (exports.go); its status, files and
// DELETE are for the caller that kicked it off only (404 for anyone
// else, as for an id that never was).

// bulkRoute serves r if it is a Bulk Data request under the FHIR base,
// and reports whether it was.
func (s *Server) bulkRoute(w http.ResponseWriter, r *http.Request) bool {
	base := "/fhir"
	if s.cfg.Exports != nil {
		base = s.cfg.Exports.cfg.Base
	}
	rest, ok := strings.CutPrefix(r.URL.Path, base+"/")
	if !ok || path.Clean(r.URL.Path) != r.URL.Path {
		return false
	}
	seg := strings.Split(rest, "/")
	switch {
	case rest == ".well-known/smart-configuration":
		only(http.MethodGet, s.smartConfiguration)(w, r)
	case s.cfg.Exports == nil:
		return false
	case rest == "$export":
		s.bulkAuthorized(s.kickOff("system", ""))(w, r)
	case rest == "Patient/$export":
		s.bulkAuthorized(s.kickOff("patient", ""))(w, r)
	case len(seg) == 3 && seg[0] == "Group" && seg[2] == "$export" && seg[1] != "":
		s.bulkAuthorized(s.kickOff("group", seg[1]))(w, r)
	case len(seg) == 2 && seg[0] == "$export-status":
		r.SetPathValue("id", seg[1])
		s.bulkAuthorized(s.exportStatus)(w, r)
	case len(seg) == 3 && seg[0] == "$export-files":
		r.SetPathValue("id", seg[1])
		r.SetPathValue("name", seg[2])
		only(http.MethodGet, s.bulkAuthorized(s.exportFile))(w, r)
	default:
		return false
	}
	return true
}

// origin is the scheme and host clients reach the server at: PublicURL
// when set (a server behind a proxy that ends TLS), else as this request
// came.
func (s *Server) origin(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// kickoffParams is what a kick-off asks for.
type kickoffParams struct {
	types    []string
	since    time.Time
	until    time.Time
	elements []string
	patients []string
	notes    []string // ignored under handling=lenient
}

// badRequest is a kick-off refused: its status and what to say.
type badRequest struct {
	status int
	code   string
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

func invalid(format string, args ...any) *badRequest {
	return &badRequest{http.StatusBadRequest, "invalid", fmt.Sprintf(format, args...)}
}

// printable is a caller's text made fit for one line of a message.
func printable(s string) string { return bulkclient.Printable(s, 80) }

// elementName is what an _elements entry may be: a top-level element,
// of every type or of one.
var elementName = regexp.MustCompile(`^([A-Z][A-Za-z0-9]*\.)?[a-z][A-Za-z0-9]*(\[x\])?$`)

// outputFormats are the _outputFormat values of ndjson (the IG's three).
var outputFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// preferences reads the Prefer header: respond-async, handling=lenient.
func preferences(r *http.Request) (async, lenient bool) {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ';' }) {
			switch strings.ToLower(strings.ReplaceAll(strings.TrimSpace(p), " ", "")) {
			case "respond-async":
				async = true
			case "handling=lenient":
				lenient = true
			}
		}
	}
	return async, lenient
}

// maxKickOffBody bounds a POST kick-off's Parameters.
const maxKickOffBody = 1 << 20

// param is one kick-off parameter, from the query or a Parameters body.
type param struct {
	name, value string
	post        bool
}

// readParams reads the kick-off's parameters: the query of a GET, the
// Parameters body of a POST.
func readParams(w http.ResponseWriter, r *http.Request) ([]param, *badRequest) {
	var out []param
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		for name, values := range r.URL.Query() {
			for _, v := range values {
				out = append(out, param{name: name, value: v})
			}
		}
		slices.SortStableFunc(out, func(a, b param) int { return strings.Compare(a.name, b.name) })
		return out, nil
	}
	if len(r.URL.RawQuery) > 0 {
		return nil, invalid("a POST kick-off takes its parameters in the body (Parameters), not the query")
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/fhir+json" && mt != "application/json" {
		return nil, &badRequest{http.StatusUnsupportedMediaType, "invalid", "a POST kick-off's body is a Parameters resource: Content-Type: application/fhir+json"}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxKickOffBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &badRequest{http.StatusRequestEntityTooLarge, "too-costly", fmt.Sprintf("the Parameters body is over %d KiB", maxKickOffBody>>10)}
		}
		return nil, invalid("the body could not be read")
	}
	var body struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string                      `json:"name"`
			ValueString    *string                     `json:"valueString"`
			ValueCode      *string                     `json:"valueCode"`
			ValueInstant   *string                     `json:"valueInstant"`
			ValueDateTime  *string                     `json:"valueDateTime"`
			ValueBoolean   *bool                       `json:"valueBoolean"`
			ValueReference *struct{ Reference string } `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(data, &body); err != nil || body.ResourceType != "Parameters" {
		return nil, invalid("the body is not a Parameters resource (JSON)")
	}
	for i, p := range body.Parameter {
		var v string
		switch {
		case p.ValueString != nil:
			v = *p.ValueString
		case p.ValueCode != nil:
			v = *p.ValueCode
		case p.ValueInstant != nil:
			v = *p.ValueInstant
		case p.ValueDateTime != nil:
			v = *p.ValueDateTime
		case p.ValueBoolean != nil:
			v = strconv.FormatBool(*p.ValueBoolean)
		case p.ValueReference != nil:
			v = p.ValueReference.Reference
		default:
			return nil, invalid("parameter %d (%s) has no value[x] this server reads (valueString, valueCode, valueInstant, valueBoolean, valueReference)", i+1, printable(p.Name))
		}
		out = append(out, param{name: p.Name, value: v, post: true})
	}
	return out, nil
}

// parseKickOff checks a kick-off's parameters for level (system, patient,
// group).
func parseKickOff(params []param, level string, lenient bool) (kickoffParams, *badRequest) {
	var k kickoffParams
	seen := map[string]bool{}
	for _, p := range params {
		single := func() *badRequest {
			if seen[p.name] {
				return invalid("%s: given twice", p.name)
			}
			seen[p.name] = true
			return nil
		}
		switch p.name {
		case "_outputFormat":
			if e := single(); e != nil {
				return k, e
			}
			if !slices.Contains(outputFormats, p.value) {
				return k, invalid("_outputFormat %q: this server writes ndjson only (%s)", printable(p.value), strings.Join(outputFormats, ", "))
			}
		case "_since", "_until":
			if e := single(); e != nil {
				return k, e
			}
			t, err := dump.ParseSince(p.value)
			if err != nil {
				return k, invalid("%s %q: not a FHIR instant (as 2026-01-02T03:04:05Z)", p.name, printable(p.value))
			}
			if p.name == "_since" {
				k.since = t
			} else {
				k.until = t
			}
		case "_type":
			for _, t := range strings.Split(p.value, ",") {
				t = strings.TrimSpace(t)
				if err := store.ValidateType(t); err != nil {
					return k, invalid("_type %q: not a resource type", printable(t))
				}
				if !slices.Contains(k.types, t) {
					k.types = append(k.types, t)
				}
			}
		case "_elements":
			for _, e := range strings.Split(p.value, ",") {
				e = strings.TrimSpace(e)
				if !elementName.MatchString(e) {
					return k, invalid("_elements %q: not an element (as code, or Observation.code)", printable(e))
				}
				k.elements = append(k.elements, e)
			}
		case "patient":
			if level == "system" {
				return k, invalid("patient: only at the Patient and Group level ([base]/Patient/$export)")
			}
			if !p.post {
				return k, invalid("patient: only in a POST kick-off's Parameters (valueReference)")
			}
			id, ok := strings.CutPrefix(p.value, "Patient/")
			if !ok || !compartment.ID.MatchString(id) {
				return k, invalid("patient %q: a reference as Patient/ID", printable(p.value))
			}
			if !slices.Contains(k.patients, id) {
				if len(k.patients) == maxPatients {
					return k, invalid("patient: more than %d (a Group holds more)", maxPatients)
				}
				k.patients = append(k.patients, id)
			}
		default:
			what := fmt.Sprintf("%s: not supported by this server", printable(p.name))
			if !lenient {
				return k, invalid("%s (Prefer: handling=lenient ignores it)", what)
			}
			k.notes = append(k.notes, what+": ignored (handling=lenient)")
		}
	}
	if !k.since.IsZero() && !k.until.IsZero() && k.until.Before(k.since) {
		return k, invalid("_until is before _since")
	}
	return k, nil
}

// maxPatients bounds the patient parameters of a kick-off: each row is
// tested against them.
const maxPatients = 1000

// retryAfterBusy is what a kick-off beyond --max-exports is told to wait.
const retryAfterBusy = 10 * time.Second

// kickOff is GET|POST [base]/$export, Patient/$export, Group/ID/$export.
func (s *Server) kickOff(level, group string) func(w http.ResponseWriter, r *http.Request, c Caller) {
	return func(w http.ResponseWriter, r *http.Request, c Caller) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", fmt.Sprintf("%s %s: GET or POST", r.Method, r.URL.Path))
			return
		}
		async, lenient := preferences(r)
		if !async {
			writeOutcome(w, http.StatusBadRequest, "invalid", "a Bulk Data kick-off needs the header Prefer: respond-async")
			return
		}
		if a := r.Header.Get("Accept"); a != "" && !acceptsFHIRJSON(a) {
			writeOutcome(w, http.StatusNotAcceptable, "invalid", fmt.Sprintf("Accept %q: this server answers application/fhir+json", printable(a)))
			return
		}
		params, bad := readParams(w, r)
		if bad == nil {
			var k kickoffParams
			if k, bad = parseKickOff(params, level, lenient); bad == nil {
				bad = s.startExport(w, r, c, level, group, k)
			}
		}
		if bad != nil {
			writeOutcome(w, bad.status, bad.code, bad.msg)
		}
	}
}

// acceptsFHIRJSON reports whether an Accept header takes
// application/fhir+json.
func acceptsFHIRJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch mt {
		case "application/fhir+json", "application/json", "application/*", "*/*":
			return true
		}
	}
	return false
}

// startExport checks what the caller may read and starts the job.
func (s *Server) startExport(w http.ResponseWriter, r *http.Request, c Caller, level, group string, k kickoffParams) *badRequest {
	x := s.cfg.Exports
	if s.stopping.Load() {
		w.Header().Set("Retry-After", fmt.Sprint(int(retryBusy.Seconds())))
		return &badRequest{http.StatusServiceUnavailable, "transient", "the server is stopping"}
	}
	for _, t := range k.types {
		if !c.mayRead(t) {
			return &badRequest{http.StatusForbidden, "forbidden", fmt.Sprintf("the scope of %s does not read %s", c.Name, t)}
		}
	}
	if c.SMART && !c.AllTypes && len(c.Types) == 0 {
		return &badRequest{http.StatusForbidden, "forbidden", fmt.Sprintf("the scope of %s reads no type (as system/*.read, system/Patient.rs)", c.Name)}
	}
	types := k.types
	if len(types) == 0 && c.SMART && !c.AllTypes {
		types = c.Types
	}
	o := export.Options{DSN: s.cfg.DSN, Until: k.until, Wait: time.Minute, Elements: k.elements}
	if level != "system" {
		for _, t := range k.types {
			if !compartment.In(t) {
				return invalid("_type %s: not in the Patient compartment: a %s-level export has none of it", t, map[string]string{"patient": "Patient", "group": "Group"}[level])
			}
		}
		if len(types) > 0 && len(k.types) == 0 { // a scope's types: those of the compartment
			types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return !compartment.In(t) })
			if len(types) == 0 {
				return &badRequest{http.StatusForbidden, "forbidden", fmt.Sprintf("the scope of %s reads no type of the Patient compartment", c.Name)}
			}
		}
		switch {
		case len(k.patients) > 0:
			o.Patients = &compartment.Selection{IDs: k.patients}
		case level == "patient":
			o.Patients = &compartment.Selection{All: true}
		}
	}
	if level == "group" {
		if !compartment.ID.MatchString(group) {
			return &badRequest{http.StatusNotFound, "not-found", fmt.Sprintf("no Group %q", printable(group))}
		}
		select {
		case s.busy <- struct{}{}: // a connection: one of --max-concurrent
		default:
			w.Header().Set("Retry-After", fmt.Sprint(int(retryBusy.Seconds())))
			return &badRequest{http.StatusServiceUnavailable, "throttled", fmt.Sprintf("busy: %d operations run already (--max-concurrent); try again later", s.cfg.MaxConcurrent)}
		}
		found, err := s.groupExists(r.Context(), group)
		<-s.busy
		if err != nil {
			s.cfg.Log.Error("Group not looked up", "error", err.Error())
			return &badRequest{http.StatusServiceUnavailable, "transient", "the database cannot be reached"}
		} else if !found {
			return &badRequest{http.StatusNotFound, "not-found", fmt.Sprintf("no Group %q", group)}
		}
		o.Group = group
	}
	o.Types = types
	rec := record{Owner: c.owner(), Request: s.origin(r) + r.URL.RequestURI(), Level: level, Group: group, Patients: k.patients,
		Types: types, Elements: k.elements, Notes: k.notes}
	if !k.since.IsZero() {
		o.Since = export.After(k.since) // _since is exclusive
		rec.Since = bulkdata.FormatTime(k.since)
	}
	if !k.until.IsZero() {
		rec.Until = bulkdata.FormatTime(k.until)
	}
	j, err := x.start(s.imports, rec, o)
	if errors.Is(err, errTooMany) {
		w.Header().Set("Retry-After", fmt.Sprint(int(retryAfterBusy.Seconds())))
		return &badRequest{http.StatusTooManyRequests, "throttled", fmt.Sprintf("%d exports run already (--max-exports): try again later", x.cfg.Max)}
	} else if errors.Is(err, errTooManyKept) {
		return &badRequest{http.StatusTooManyRequests, "throttled", fmt.Sprintf("%s keeps %d exports already: DELETE those fetched", c.Name, MaxKeptPerCaller)}
	} else if err != nil {
		s.cfg.Log.Error("export not started", "error", err.Error())
		return &badRequest{http.StatusInternalServerError, "exception", "the export could not be started"}
	}
	s.cfg.Log.Info("export started", "id", j.ID, "owner", j.Owner, "level", level)
	w.Header().Set("Content-Location", s.origin(r)+x.cfg.Base+"/$export-status/"+j.ID)
	writeOutcomeSeverity(w, http.StatusAccepted, "information", "informational", "the export started; poll the Content-Location")
	return nil
}

// groupExists reports whether Group id is there.
func (s *Server) groupExists(ctx context.Context, id string) (bool, error) {
	conn, err := pg.Connect(ctx, s.cfg.DSN)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var found bool
	err = conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, store.Table("Group")).Scan(&found)
	if err == nil && found {
		err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM `+store.Table("Group")+` WHERE id = $1)`, id).Scan(&found)
	}
	return found, err
}

// exportStatus is GET|DELETE [base]/$export-status/ID.
func (s *Server) exportStatus(w http.ResponseWriter, r *http.Request, c Caller) {
	x := s.cfg.Exports
	j, rec, m := x.get(r.PathValue("id"), c.owner())
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete:
		w.Header().Set("Allow", "GET, DELETE")
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", fmt.Sprintf("%s %s: GET or DELETE", r.Method, r.URL.Path))
		return
	case j == nil:
		writeOutcome(w, http.StatusNotFound, "not-found", "no such export (it may have expired or been deleted)")
		return
	case r.Method == http.MethodDelete:
		x.cancel(j)
		writeOutcomeSeverity(w, http.StatusAccepted, "information", "informational", "the export is cancelled and its files removed")
		return
	}
	if hold := holdFor(j.rows.Load(), j.estimate.Load(), time.Since(rec.Created)); rec.Status == jobRunning && hold > 0 {
		// A poll near the end waits for it (a while): the client gets the
		// manifest when it is there, not a Retry-After later.
		select {
		case <-j.done:
			rec, m = x.snapshot(j)
		case <-time.After(hold):
		case <-r.Context().Done():
			return
		}
	}
	switch rec.Status {
	case jobCancelled: // deleted while this request looked
		writeOutcome(w, http.StatusNotFound, "not-found", "no such export (it may have expired or been deleted)")
	case jobRunning:
		w.Header().Set("X-Progress", progressText(j.rows.Load(), j.estimate.Load()))
		// Polls cost a read of memory: often while a job is young (a client
		// that waits longer than the job is the cost), less after.
		retry := 1
		switch age := time.Since(rec.Created); {
		case age > 10*time.Minute:
			retry = 5
		case age > 2*time.Minute:
			retry = 2
		}
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusAccepted)
	case jobFailed:
		writeOutcome(w, http.StatusInternalServerError, "exception", "the export failed: "+rec.Error)
	case jobDone:
		w.Header().Set("Expires", rec.Expires.UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, s.servedManifest(r, rec, m))
	}
}

// holdNearlyDone is how long a poll of a job near its end waits for it;
// holdYoung how long from its start a poll of a job waits in any case (a
// small export is done by then).
const (
	holdNearlyDone = 5 * time.Second
	holdYoung      = 2 * time.Second
)

// holdFor is how long a poll of a job that has written rows in elapsed
// waits for its end: up to holdYoung from its start, or holdNearlyDone
// when, at the rate it goes, it may end by then (of the rows the planner
// expects, estimate; without one, any job under way may); else none.
func holdFor(rows, estimate int64, elapsed time.Duration) time.Duration {
	switch {
	case elapsed < holdYoung:
		return holdYoung - elapsed
	case rows <= 0:
		return 0 // not started (waiting for a lock, say)
	case estimate <= 0:
		return holdNearlyDone
	}
	left := time.Duration(float64(max(estimate-rows, 0)) / float64(rows) * float64(elapsed))
	if left <= holdNearlyDone {
		return holdNearlyDone
	}
	return 0
}

// progressText is X-Progress: under 100 characters.
func progressText(rows, estimate int64) string {
	if estimate <= 0 {
		return progress.Count(rows) + " resources written"
	}
	pct := min(100*rows/estimate, 99)
	return fmt.Sprintf("%s of about %s resources (%d%%)", progress.Count(rows), progress.Count(max(estimate, rows)), pct)
}

// servedManifest is a finished job's manifest as a client gets it: the
// files' URLs absolute, under $export-files, the request as it came.
func (s *Server) servedManifest(r *http.Request, rec record, m *bulkdata.Manifest) bulkdata.Manifest {
	out := bulkdata.Manifest{TransactionTime: m.TransactionTime, Request: rec.Request, RequiresAccessToken: s.authEnabled()}
	prefix := s.origin(r) + s.cfg.Exports.cfg.Base + "/$export-files/" + rec.ID + "/"
	abs := func(list []bulkdata.File) []bulkdata.File {
		out := make([]bulkdata.File, len(list))
		for i, f := range list {
			out[i] = f
			out[i].URL = prefix + f.URL
		}
		return out
	}
	out.Output, out.Error = abs(m.Output), abs(m.Error)
	if rec.Since != "" {
		out.Deleted = abs(m.Deleted)
	}
	return out
}

// exportFile is GET [base]/$export-files/ID/NAME: a file of a finished
// export, with Range requests, gzip when the client accepts it (and asks
// no range).
func (s *Server) exportFile(w http.ResponseWriter, r *http.Request, c Caller) {
	x := s.cfg.Exports
	j, rec, _ := x.get(r.PathValue("id"), c.owner())
	name := r.PathValue("name")
	if j == nil || rec.Status != jobDone || !j.names[name] {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such file (its export may have expired or been deleted)")
		return
	}
	f, err := os.Open(filepath.Join(x.filesDir(rec.ID), name))
	if err != nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such file (its export may have expired or been deleted)")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, "exception", "the file cannot be read")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/fhir+ndjson")
	h.Set("Vary", "Accept-Encoding")
	h.Set("Cache-Control", "private, no-store")
	gzipSlot := false
	if r.Header.Get("Range") == "" && acceptsGzip(r) && r.Method == http.MethodGet {
		// Compressing costs a core: one of --max-concurrent; when none is
		// free the file goes as it is.
		select {
		case s.busy <- struct{}{}:
			gzipSlot = true
			defer func() { <-s.busy }()
		default:
		}
	}
	if gzipSlot {
		h.Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if _, err := io.Copy(zw, f); err != nil {
			panic(http.ErrAbortHandler) // the client sees a cut stream, not an end
		}
		if err := zw.Close(); err != nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	http.ServeContent(w, r, "", st.ModTime(), f)
}
