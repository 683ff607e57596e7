package serve

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/fsutil"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// Imports run in the server's process, in the server's state folder, as
// `fhirbulk import` runs them (parallel, resumable, a state file that
// `fhirbulk status` reads too). The request a server took is kept beside
// the state as ID.request, so that an import a stop interrupted goes on
// when the server starts again.

// requestSuffix names the file of the request an import was started with.
const requestSuffix = ".request"

// importStart is POST /$import and /fhir/$import: Aidbox's body (id,
// contentEncoding, inputs or input, update, inputFormat, mode), run in the
// background; the answer, at once, is 202 with Content-Location of its
// BulkImportStatus.
func (s *Server) importStart(w http.ResponseWriter, r *http.Request, _ Caller) {
	if s.cfg.Store == nil {
		writeOutcome(w, http.StatusNotImplemented, "not-supported", "this server has no state folder for imports")
		return
	}
	if s.stopping.Load() {
		w.Header().Set("Retry-After", fmt.Sprint(int(retryBusy.Seconds())))
		writeOutcome(w, http.StatusServiceUnavailable, "transient", "the server is stopping")
		return
	}
	data, status, err := readRaw(w, r)
	if err != nil {
		writeOutcome(w, status, "invalid", err.Error())
		return
	}
	// Relative urls would name the server's own files: they resolve into
	// a folder that is never there, and are refused as paths below.
	m, err := bulkimport.ParseManifest(data, bulkimport.Where{Dir: filepath.Join(s.cfg.Store.Dir, ".no-relative-urls"), AllowOutside: true})
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if strings.HasPrefix(r.URL.Path, "/fhir/") {
		m.FHIR = true
	}
	for i, in := range m.Inputs {
		u := in.URL
		if !source.IsURL(u) {
			u = "file://" + u
		}
		if err := s.cfg.Sources.CheckURL(u); err != nil {
			writeOutcome(w, http.StatusForbidden, "forbidden", fmt.Sprintf("inputs[%d]: %v", i, err))
			return
		}
	}
	id := m.ID
	if id == "" {
		id = bulkimport.NewID(s.cfg.Now())
	}
	if err := bulkimport.CheckID(id); err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", fmt.Sprintf("id %q: %v", id, err))
		return
	}
	if _, err := s.cfg.Store.Read(id); err == nil || s.cfg.Store.Running(id) {
		writeOutcome(w, http.StatusConflict, "duplicate", fmt.Sprintf("import %q exists already: give another id (its status: GET /BulkImportStatus/%s)", id, id))
		return
	}
	// The request, kept for a restart; the manifest names it.
	path := filepath.Join(s.cfg.Store.Dir, id+requestSuffix)
	if err := os.MkdirAll(s.cfg.Store.Dir, 0o700); err != nil {
		s.failed(w, r, err)
		return
	}
	if err := fsutil.WriteFile(path, data, 0o600); err != nil {
		s.failed(w, r, err)
		return
	}
	m.Path = path
	started, err := s.startImport(m, id)
	if err != nil {
		os.Remove(path)
		var busy *busyError
		var down *pg.ConnectError
		if errors.As(err, &down) {
			s.databaseDown(w, r, err)
			return
		}
		if errors.As(err, &busy) {
			w.Header().Set("Retry-After", fmt.Sprint(int(retryBusy.Seconds())))
			writeOutcome(w, http.StatusServiceUnavailable, "throttled", err.Error())
			return
		}
		writeOutcome(w, http.StatusUnprocessableEntity, "processing", firstLine(err.Error()))
		return
	}
	w.Header().Set("Content-Location", "/BulkImportStatus/"+id)
	writeJSON(w, http.StatusAccepted, aidboxStatus(started))
}

type busyError struct{ n int }

func (e *busyError) Error() string {
	return fmt.Sprintf("busy: %d operations run already (--max-concurrent); try again later", e.n)
}

// startImport runs import id of m in the background (taking a slot of
// MaxConcurrent for as long as it runs) and returns its first state.
func (s *Server) startImport(m *bulkimport.Manifest, id string) (*bulkimport.State, error) {
	select {
	case s.busy <- struct{}{}:
	default:
		return nil, &busyError{s.cfg.MaxConcurrent}
	}
	db, err := bulkimport.Identify(s.imports, s.cfg.DSN)
	if err != nil {
		<-s.busy
		return nil, err
	}
	opts := bulkimport.Options{DSN: s.cfg.DSN, DB: db, Store: *s.cfg.Store, Parallel: 2,
		Source: source.Options{Client: s.cfg.Sources.Client()}, FormatCheck: fhirformat.CheckLines}
	if err := bulkimport.Check(m, id, opts); err != nil {
		<-s.busy
		return nil, err
	}
	ended := make(chan error, 1)
	s.active.Add(1)
	go func() {
		defer s.active.Done()
		defer func() { <-s.busy }()
		st, err := bulkimport.Run(s.imports, m, id, opts)
		switch {
		case err != nil:
			s.cfg.Log.Warn("import", "id", id, "error", err.Error())
		case st != nil:
			s.cfg.Log.Info("import", "id", id, "status", st.Status)
		}
		ended <- err
	}()
	// Its state file is written before any input loads: wait for it, or
	// for a refusal.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if st, err := s.cfg.Store.Read(id); err == nil {
			return st, nil
		}
		select {
		case err := <-ended:
			if err == nil {
				return s.cfg.Store.Read(id)
			}
			return nil, err
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("import %s did not start within 30s", id)
}

// resumeImports goes on with the imports this server started that a stop
// interrupted.
func (s *Server) resumeImports() {
	if s.cfg.Store == nil {
		return
	}
	list, err := s.cfg.Store.List()
	if err != nil {
		s.cfg.Log.Warn("imports to resume", "error", err.Error())
		return
	}
	for _, st := range list {
		if st.Status != bulkimport.StatusInterrupted || st.Manifest != filepath.Join(s.cfg.Store.Dir, st.ID+requestSuffix) {
			continue
		}
		plan, err := s.cfg.Store.Plan(s.imports, bulkimport.Request{Resume: st.ID}, s.cfg.Now())
		if err == nil {
			// What --allow-source allows now, not when it was asked.
			for i, in := range plan.Manifest.Inputs {
				u := in.URL
				if !source.IsURL(u) {
					u = "file://" + u
				}
				if cerr := s.cfg.Sources.CheckURL(u); cerr != nil {
					err = fmt.Errorf("inputs[%d]: %w", i, cerr)
					break
				}
			}
		}
		if err == nil {
			_, err = s.startImport(plan.Manifest, plan.ID)
		}
		if err != nil {
			s.cfg.Log.Warn("resume import", "id", st.ID, "error", err.Error())
			continue
		}
		s.cfg.Log.Info("resumed import", "id", st.ID)
	}
}

// importStatus is GET /BulkImportStatus/ID.
func (s *Server) importStatus(w http.ResponseWriter, r *http.Request, _ Caller) {
	id := r.PathValue("id")
	if err := bulkimport.CheckID(id); err != nil || s.cfg.Store == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", fmt.Sprintf("no import %q", id))
		return
	}
	st, err := s.cfg.Store.Read(id)
	if errors.Is(err, bulkimport.ErrUnknown) {
		writeOutcome(w, http.StatusNotFound, "not-found", fmt.Sprintf("no import %q", id))
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, aidboxStatus(st))
}

// aidboxStatus is st as Aidbox's BulkImportStatus: status active, failed,
// cancelled or finished, inputs with url, resourceType, status, total,
// duration and error; fhirbulk's own status (interrupted is told apart
// from active) and each input's bytes are under "fhirbulk".
func aidboxStatus(st *bulkimport.State) map[string]any {
	status := map[string]string{bulkimport.StatusInProgress: "active", bulkimport.StatusInterrupted: "active",
		bulkimport.StatusFinished: "finished", bulkimport.StatusFailed: "failed", bulkimport.StatusCancelled: "cancelled"}[st.Status]
	inputs := []map[string]any{}
	own := []map[string]any{}
	for _, in := range st.Inputs {
		is := map[string]any{"url": in.URL, "resourceType": in.ResourceType, "status": map[string]string{
			bulkimport.StatusPending: "pending", bulkimport.StatusInProgress: "active", bulkimport.StatusFinished: "finished", bulkimport.StatusFailed: "failed"}[in.Status],
			"total": in.Total, "duration": in.Duration}
		if in.Error != "" {
			is["error"] = in.Error
		}
		inputs = append(inputs, is)
		own = append(own, map[string]any{"status": in.Status, "bytesRead": in.BytesRead, "bytesTotal": in.BytesTotal})
	}
	out := map[string]any{"resourceType": "BulkImportStatus", "id": st.ID, "type": st.Type, "status": status,
		"time": st.Time, "inputs": inputs, "fhirbulk": map[string]any{"status": st.Status, "inputs": own}}
	if st.ContentEncoding != "" {
		out["contentEncoding"] = st.ContentEncoding
	}
	return out
}

// readRaw reads a JSON or YAML body whole (at most maxBody bytes).
func readRaw(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if status, err := checkContentType(r); err != nil {
		return nil, status, err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the body is over %d KiB", maxBody>>10)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	return data, 0, nil
}
