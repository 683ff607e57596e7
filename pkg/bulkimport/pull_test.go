package bulkimport

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkclient"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// What --since last matches: the server and the selection, not the time
// window or the format; and the database pulled into.
func TestSelectionKey(t *testing.T) {
	db := pg.Identity{SystemID: "1", OID: 5, Database: "a"}
	req := func(params ...bulkclient.Param) bulkclient.Request {
		return bulkclient.Request{URL: "https://h/fhir/$export", Params: params}
	}
	base := selectionKey(req(bulkclient.Param{Name: "_type", Value: "Patient"}), db)
	same := selectionKey(req(bulkclient.Param{Name: "_since", Value: "2026-01-01T00:00:00Z"}, bulkclient.Param{Name: "_type", Value: "Patient"},
		bulkclient.Param{Name: "_outputFormat", Value: "ndjson"}), db)
	if base != same {
		t.Error("_since or _outputFormat changed the key")
	}
	for name, other := range map[string]string{
		"another type":     selectionKey(req(bulkclient.Param{Name: "_type", Value: "Observation"}), db),
		"another database": selectionKey(req(bulkclient.Param{Name: "_type", Value: "Patient"}), pg.Identity{SystemID: "1", OID: 6}),
		"another server":   selectionKey(bulkclient.Request{URL: "https://other/fhir/$export", Params: []bulkclient.Param{{Name: "_type", Value: "Patient"}}}, db),
	} {
		if other == base {
			t.Errorf("%s: the same key", name)
		}
	}
}

// PlanPull goes on with an unfinished pull of the same request; a finished,
// expired, failed or cancelled one is not taken up again; --since last takes
// the last mark of its selection.
func TestPlanPull(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	db := pg.Identity{SystemID: "1", OID: 5, Database: "a"}
	req := PullRequest{KickOff: bulkclient.Request{URL: "https://h/fhir/$export", Params: []bulkclient.Param{{Name: "_type", Value: "Patient"}}}}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

	first, err := s.PlanPull(req, db, now)
	if err != nil || first.Resumed || first.Since != "" {
		t.Fatalf("%+v %v", first, err)
	}
	// Recorded, with a state of a process that is gone: interrupted.
	if err := first.Record(s); err != nil {
		t.Fatal(err)
	}
	st := &State{ID: first.ID, Status: StatusInProgress, Time: StateTime{Start: now}, Inputs: []InputState{},
		Pull: &PullState{Key: first.rec.Key, Phase: PhaseExport}}
	if err := s.Write(st); err != nil {
		t.Fatal(err)
	}
	again, err := s.PlanPull(req, db, now.Add(time.Minute))
	if err != nil || !again.Resumed || again.ID != first.ID {
		t.Fatalf("not resumed: %+v %v", again, err)
	}
	// Another database, another request: a new pull.
	if p, _ := s.PlanPull(req, pg.Identity{SystemID: "1", OID: 6}, now); p.Resumed {
		t.Error("resumed into another database")
	}
	other := req
	other.KickOff.Params = []bulkclient.Param{{Name: "_type", Value: "Patient"}, {Name: "_elements", Value: "id"}}
	if p, _ := s.PlanPull(other, db, now); p.Resumed {
		t.Error("resumed another request")
	}
	for _, end := range []struct{ status, phase string }{
		{StatusFinished, PhaseDone}, {StatusFailed, PhaseExpired}, {StatusFailed, PhaseFailed}, {StatusCancelled, PhaseCancelled},
	} {
		st.Status, st.Pull.Phase = end.status, end.phase
		if err := s.Write(st); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.PlanPull(req, db, now); p.Resumed {
			t.Errorf("%s/%s resumed", end.status, end.phase)
		}
	}
	// A pull that failed on its inputs (bad lines) goes on.
	st.Status, st.Pull.Phase = StatusFailed, PhaseDownload
	s.Write(st)
	if p, _ := s.PlanPull(req, db, now); !p.Resumed {
		t.Error("a pull whose files failed is not taken up again")
	}

	// --since last: the mark of the same selection.
	req.SinceLast = true
	st.Status, st.Pull.Phase = StatusFinished, PhaseDone
	s.Write(st)
	if err := s.markPull(first.rec.Key, pullMark{TransactionTime: "2026-12-04T11:00:00Z", Import: first.ID}); err != nil {
		t.Fatal(err)
	}
	p, err := s.PlanPull(req, db, now)
	if err != nil || p.Since != "2026-12-04T11:00:00Z" || p.rec.Request.Params[0] != (bulkclient.Param{Name: "_since", Value: "2026-12-04T11:00:00Z"}) {
		t.Fatalf("%+v %v", p, err)
	}
	// The request the caller holds is not changed.
	if len(req.KickOff.Params) != 1 {
		t.Error("PlanPull changed the caller's parameters")
	}

	// The record never holds a password, and is the owner's only.
	rec, err := os.ReadFile(filepath.Join(s.Dir, first.ID+".pull"))
	if err != nil || strings.Contains(string(rec), "password") {
		t.Errorf("record: %s %v", rec, err)
	}
	if fi, _ := os.Stat(filepath.Join(s.Dir, first.ID+".pull")); fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v", fi.Mode())
	}
	// A record is no import of its own in the list.
	list, _ := s.List()
	if len(list) != 1 {
		t.Errorf("%d imports listed", len(list))
	}
}

// A manifest's files must be http(s) or a bucket's; relative urls resolve
// against the status URL; an output without a type is refused.
func TestPullManifest(t *testing.T) {
	rec := &pullRecord{StatusURL: "https://h/fhir/status/1?_jobId=a", Manifest: []byte(`{"transactionTime":"t","requiresAccessToken":true,
		"output":[{"type":"Patient","url":"files/p.ndjson"},{"type":"Observation","url":"s3://b/o.ndjson"}],
		"deleted":[{"type":"Bundle","url":"https://h/d.ndjson"}],"error":[{"type":"OperationOutcome","url":"https://h/e.ndjson"}]}`)}
	m, doc, err := pullManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	if m.Inputs[0].URL != "https://h/fhir/status/files/p.ndjson" || m.Inputs[1].URL != "s3://b/o.ndjson" || m.Deleted[0].URL != "https://h/d.ndjson" || !m.FHIR || !doc.RequiresAccessToken {
		t.Errorf("%+v", m)
	}
	for raw, want := range map[string]string{
		`{"output":[{"type":"Patient","url":"file:///etc/passwd"}]}`: "output[0].url file:///etc/passwd: not an http(s) or bucket URL",
		`{"output":[{"type":"Patient","url":"ftp://h/p?sig=x"}]}`:    "output[0].url ftp://h/p?…: not an http(s) or bucket URL",
		`{"output":[{"url":"https://h/p"}]}`:                         "output[0] has no type",
		`{"output":[],"deleted":[{"type":"Bundle","url":"/abs/d"}]}`: "",
		`{"output":[{"type":"Pat ient","url":"https://h/p"}]}`:       "output[0].type",
		`{"output":[],"error":[{"type":"x","url":"gopher://h/e"}]}`:  "error[0].url gopher://h/e",
	} {
		rec.Manifest = []byte(raw)
		_, _, err := pullManifest(rec)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", raw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}

// The token request follows no redirect: a 307 would carry the client's
// assertion (a POST body) to another host.
func TestTokenRequestNoRedirect(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	path := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "client_assertion") {
			leaked.Store(true)
		}
	}))
	defer other.Close()
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/token", http.StatusTemporaryRedirect)
	}))
	defer token.Close()
	_, err = OpenAuth(nil)(context.Background(), PullAuth{ClientID: "c", PrivateKey: path, TokenURL: token.URL + "/token"}, "http://unused")
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("err %v", err)
	}
	if leaked.Load() {
		t.Error("the assertion went to the redirect's host")
	}
}
