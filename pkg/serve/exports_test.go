package serve

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkdata"
)

// A finished job, its status asked while it is deleted, many times over:
// every answer is a 200 with the manifest or a 404, never a crash or a
// manifest with nothing behind it; the job is gone after.
func TestStatusDuringDelete(t *testing.T) {
	x, err := OpenExports(ExportConfig{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	srv := New(Config{DSN: "postgres://unused", Exports: x})
	h := srv.Handler()
	for round := range 50 {
		id, _ := newID()
		if err := os.MkdirAll(x.filesDir(id), 0o700); err != nil {
			t.Fatal(err)
		}
		count := int64(1)
		m := &bulkdata.Manifest{TransactionTime: "2026-01-01T00:00:00Z", Output: []bulkdata.File{{Type: "Patient", URL: "Patient.ndjson", Count: &count}}}
		data, _ := m.Marshal()
		os.WriteFile(filepath.Join(x.filesDir(id), bulkdata.ManifestName), data, 0o600)
		os.WriteFile(filepath.Join(x.filesDir(id), "Patient.ndjson"), []byte("{}\n"), 0o600)
		j := &job{record: record{ID: id, Owner: "-", Status: jobDone, Created: time.Now(), Finished: time.Now(), Expires: time.Now().Add(time.Hour)}, done: make(chan struct{})}
		close(j.done)
		if err := j.load(x.filesDir(id)); err != nil {
			t.Fatal(err)
		}
		x.mu.Lock()
		x.jobs[id] = j
		x.mu.Unlock()
		var wg sync.WaitGroup
		codes := make(chan int, 20)
		for i := range 20 {
			wg.Go(func() {
				method, path := http.MethodGet, "/fhir/$export-status/"+id
				switch i {
				case 10:
					method = http.MethodDelete
				case 11, 12:
					path = "/fhir/$export-files/" + id + "/Patient.ndjson"
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
				if method == http.MethodDelete && rec.Code != http.StatusAccepted {
					t.Errorf("round %d: DELETE %d", round, rec.Code)
				}
				if method == http.MethodGet {
					codes <- rec.Code
				}
			})
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != http.StatusOK && c != http.StatusNotFound {
				t.Errorf("round %d: a status or file during DELETE: %d", round, c)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fhir/$export-status/"+id, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("round %d: after DELETE %d", round, rec.Code)
		}
	}
	x.Wait()
	if entries, _ := os.ReadDir(x.cfg.Dir); len(entries) != 1 { // .lock
		t.Errorf("left in the folder: %v", entries)
	}
}

func TestHoldFor(t *testing.T) {
	for _, c := range []struct {
		rows, estimate int64
		elapsed        time.Duration
		want           time.Duration
	}{
		{0, 1000, 500 * time.Millisecond, 1500 * time.Millisecond}, // young: up to 2 s from the start
		{0, 1000, 3 * time.Second, 0},                              // waiting for a lock
		{100, 1000, 3 * time.Second, 0},                            // 27 s to go
		{900, 1000, 30 * time.Second, holdNearlyDone},              // 3.3 s to go
		{100, -1, 3 * time.Second, holdNearlyDone},                 // no estimate, under way
		{2000, 1000, 3 * time.Second, holdNearlyDone},              // past the estimate
	} {
		if got := holdFor(c.rows, c.estimate, c.elapsed); got != c.want {
			t.Errorf("holdFor(%d, %d, %s) = %s, want %s", c.rows, c.estimate, c.elapsed, got, c.want)
		}
	}
}

// The Bulk Data endpoints are where --fhir-base puts them, and only there;
// the Aidbox API beside them is unchanged.
func TestFHIRBase(t *testing.T) {
	x, err := OpenExports(ExportConfig{Dir: t.TempDir(), Base: "/api/r4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	h := New(Config{DSN: "postgres://unused", Exports: x}).Handler()
	for _, c := range []struct {
		method, path string
		status       int
		says         string
	}{
		{"GET", "/api/r4/$export", http.StatusBadRequest, "needs the header Prefer: respond-async"},
		{"GET", "/api/r4/Patient/$export", http.StatusBadRequest, "needs the header Prefer: respond-async"},
		{"GET", "/api/r4/Group/g1/$export", http.StatusBadRequest, "needs the header Prefer: respond-async"},
		{"GET", "/api/r4/$export-status/0123456789abcdef0123456789abcdef", http.StatusNotFound, "no such export"},
		{"PUT", "/api/r4/$export-status/0123456789abcdef0123456789abcdef", http.StatusMethodNotAllowed, "GET or DELETE"},
		{"GET", "/api/r4/$export-files/0123456789abcdef0123456789abcdef/Patient.ndjson", http.StatusNotFound, "no such file"},
		{"GET", "/api/r4/../r4/$export", http.StatusTemporaryRedirect, "/api/r4/$export"}, // the mux sends it to the clean path first
		{"GET", "/fhir/$export", http.StatusNotFound, "no operation GET /fhir/$export"},
		{"GET", "/api/r4/Observation/$everything", http.StatusNotFound, "no operation"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.says) {
			t.Errorf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body.String())
		}
	}
}
