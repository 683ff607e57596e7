package bulkimport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

func TestParseManifest(t *testing.T) {
	yaml := `
id: synthea
inputFormat: application/fhir+ndjson
contentEncoding: gzip
mode: bulk
update: true
inputs:
- resourceType: Encounter
  url: https://storage.example/Encounter.ndjson.gz?sig=x
- resourceType: Patient
  url: ./Patient.ndjson.gz
- resourceType: Condition
  url: /abs/Condition.ndjson
`
	m, err := ParseManifest([]byte(yaml), Where{Dir: "/data/m", Path: "/data/m/m.yaml", AllowOutside: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "synthea" || !m.FHIR || !m.Update || m.ContentEncoding != "gzip" || m.Path != "/data/m/m.yaml" {
		t.Errorf("manifest %+v", m)
	}
	want := []Input{
		{"Encounter", "https://storage.example/Encounter.ndjson.gz?sig=x", nil},
		{"Patient", "/data/m/Patient.ndjson.gz", nil},
		{"Condition", "/abs/Condition.ndjson", nil},
	}
	for i, in := range want {
		if m.Inputs[i] != in {
			t.Errorf("input %d = %+v, want %+v", i, m.Inputs[i], in)
		}
	}

	// JSON, and the HL7 proposal's spelling.
	m, err = ParseManifest([]byte(`{"inputFormat":"application/ndjson","inputSource":"https://x","storageDetail":{"type":"https"},"input":[{"type":"Patient","url":"p.ndjson"}]}`), Where{Dir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	if m.FHIR || m.ID != "" || len(m.Inputs) != 1 || m.Inputs[0] != (Input{"Patient", "/d/p.ndjson", nil}) {
		t.Errorf("manifest %+v", m)
	}
	// A count is checked as an HL7 manifest's: YAML and JSON numbers alike.
	for _, doc := range []string{"inputs: [{resourceType: A, url: a, count: 12}]", `{"inputs":[{"resourceType":"A","url":"a","count":12}]}`, `{"inputs":[{"resourceType":"A","url":"a","count":12.0}]}`} {
		m, err := ParseManifest([]byte(doc), Where{Dir: "/d"})
		if err != nil || m.Inputs[0].Count == nil || *m.Inputs[0].Count != 12 {
			t.Errorf("%s: %+v, %v", doc, m, err)
		}
	}
	if m, err := ParseManifest([]byte("type: fhir\ninputs: [{resourceType: A, url: a}]"), Where{Dir: "/d"}); err != nil || !m.FHIR {
		t.Errorf("type: fhir: %+v, %v", m, err)
	}

	for in, want := range map[string]string{
		"inputs: [{resourceType: A, url: a}]\nextra: 1": `manifest: unknown key "extra"`,
		"inputs: [{resourceType: A, url: a, size: 1}]":  `manifest: inputs[0]: unknown key "size"`,
		"inputs: []":                          "manifest: no inputs (a list of {resourceType, url})",
		"inputs: [{url: a}]":                  "manifest: inputs[0]: no resourceType",
		"input: [{type: A}]":                  "manifest: input[0]: no url",
		"inputs: [{resourceType: 1, url: a}]": "manifest: inputs[0].resourceType: want a string",
		"inputs: [a]":                         "manifest: inputs[0]: want {resourceType, url}",
		"inputs: [{resourceType: A, url: a, count: -1}]":    `manifest: inputs[0].count: want a whole number of resources, not "-1"`,
		"inputs: [{resourceType: A, url: a, count: 1.5}]":   `manifest: inputs[0].count: want a whole number of resources, not "1.5"`,
		"inputs: [{resourceType: A, url: a, count: ten}]":   `manifest: inputs[0].count: want a whole number of resources, not "ten"`,
		"inputs: [{resourceType: A, url: a}]\nupdate: yes!": "manifest: update: want true or false",
		"inputs: [{resourceType: A, url: a}]\ninput: []":    "manifest: both inputs and input: give one",
		"":       "manifest: empty",
		"[1, 2]": "manifest: line 1: cannot unmarshal !!seq into map[string]interface {}",
		"inputs: [{resourceType: A, url: 'ftp://h/x?k=s'}]": "manifest: inputs[0].url ftp://h/x?…: only http(s), s3, gs and azblob URLs and local paths",
	} {
		_, err := ParseManifest([]byte(in), Where{Dir: "/d"})
		var me *ManifestError
		if !errors.As(err, &me) || err.Error() != want {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

func TestStore(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "state")}
	st := &State{ID: "x", Status: StatusInProgress, Time: StateTime{Start: time.Now().UTC()},
		Inputs: []InputState{{ResourceType: "A", URL: "a", Status: StatusFinished, Total: 3}, {ResourceType: "B", URL: "b", Status: StatusInProgress, Total: 7}}}
	lock, err := s.Lock("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(st); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(filepath.Join(s.Dir, "x.json")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, %v", info, err)
	}
	// With the lock released the import looks gone, as after kill -9.
	lock.Release()
	got, err := s.Read("x")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusInterrupted || got.Inputs[1].Status != StatusPending || got.Inputs[1].Total != 0 || got.Inputs[0].Total != 3 {
		t.Errorf("a dead import reads as %+v", got)
	}
	if done, n := got.Done(); done != 1 || n != 3 {
		t.Errorf("Done() = %d, %d", done, n)
	}
	if _, err := s.Read("nosuch"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("unknown id: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != "x" {
		t.Errorf("List() = %v, %v", list, err)
	}
	// Nothing left behind but the state and the lock file.
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the state folder", len(entries))
	}
}

func TestStateDir(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if _, err := StateDir("", get); err == nil {
		t.Error("no HOME: no error")
	}
	env["HOME"] = "/h"
	for _, tc := range []struct{ set, val, want string }{
		{"HOME", "/h", "/h/.local/state/fhirbulk"},
		{"XDG_STATE_HOME", "/x", "/x/fhirbulk"},
		{"FHIRBULK_STATE_DIR", "/f", "/f"},
	} {
		env[tc.set] = tc.val
		if got, _ := StateDir("", get); got != tc.want {
			t.Errorf("with %s: %s, want %s", tc.set, got, tc.want)
		}
	}
	if got, _ := StateDir("/flag", get); got != "/flag" {
		t.Errorf("--state-dir: %s", got)
	}
}

// No manifest error carries a value of the manifest: yaml.v3 quotes values
// in its messages, and the values are URLs with passwords and signatures.
func TestManifestErrorsShowNoValue(t *testing.T) {
	const url = "https://u:pa55w0rd@host/x?X-Amz-Signature=S1GNATURE"
	for in, want := range map[string]string{
		"inputs:\n- resourceType: Patient\n  url: !!int " + url:                         "manifest: line 3: cannot decode !!str as a !!int",
		"inputs:\n- resourceType: Patient\n  url: !!timestamp " + url:                   "manifest: line 3: cannot decode !!str as a !!timestamp",
		"inputs:\n- resourceType: Patient\n  url: !!float |\n    " + url + "\n    more": "manifest: line 3: cannot decode !!str as a !!float",
		"inputs:\n- resourceType: Patient\n  url: !!binary " + url:                      "manifest: line 3: !!binary value contains invalid base64 data",
		"inputs:\n- resourceType: Patient\n  url: *" + url:                              "manifest: not JSON or YAML: unknown anchor referenced",
		"!!map " + url:             "manifest: line 1: cannot unmarshal a value into map[string]interface {}",
		"!!str " + url:             "manifest: line 1: cannot unmarshal !!str into map[string]interface {}",
		url:                        "manifest: line 1: cannot unmarshal !!str into map[string]interface {}",
		"a: &x [*x]\nb: " + url:    "manifest: an anchor's value contains itself",
		"inputs: [unclosed " + url: "manifest: not JSON or YAML: did not find expected ',' or ']'",
		url + ": 1\ninputs: []":    `manifest: unknown key "https://host/x?…"`,
		"inputs:\n- resourceType: A\n  url: a\n  " + url + ": 1": `manifest: inputs[0]: unknown key "https://host/x?…"`,
		"inputs: [{resourceType: '" + url + "', url: a}]":        `manifest: inputs[0].resourceType "https://host/x?…": not a resource type`,
		"id: " + url + "\ninputs: []":                            `manifest: id "https://host/x?…": use letters, digits, '.', '_' and '-' (at most 128)`,
		"inputFormat: " + url + "\ninputs: []":                   `manifest: inputFormat "https://host/x?…": want application/fhir+ndjson (FHIR) or application/ndjson (Aidbox)`,
		"type: " + url + "\ninputs: []":                          `manifest: type "https://host/x?…": want fhir or aidbox`,
		"contentEncoding: " + url + "\ninputs: []":               `manifest: contentEncoding "https://host/x?…": want gzip or plain`,
	} {
		_, err := ParseManifest([]byte(in), Where{Dir: "/d"})
		var me *ManifestError
		if !errors.As(err, &me) || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "pa55w0rd") || strings.Contains(err.Error(), "S1GNATURE")) {
			t.Errorf("%q: the error shows a secret: %v", in, err)
		}
	}
}

// writeState writes a state file as it was left by a run that ended.
func writeState(t *testing.T, s Store, st *State) {
	t.Helper()
	if err := s.Write(st); err != nil {
		t.Fatal(err)
	}
}

// A resumed import loads again a finished input whose whole URL changed,
// though it redacts the same; a state file without hashes (older versions)
// keeps a finished input only if its recorded URL was the whole URL.
func TestResumeComparesWholeURLs(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	old := []Input{
		{"Patient", "https://h/p.ndjson?f=p1", nil},
		{"Condition", "https://h/c.ndjson?X-Amz-Signature=one", nil},
		{"Observation", "/data/o.ndjson", nil},
		{"Encounter", "https://h/e.ndjson?f=e", nil},
		{"Basic", "https://h/b.ndjson", nil},
	}
	state := func(hashes bool) *State {
		st := &State{ID: "x", Status: StatusFailed, Time: StateTime{Start: time.Now().UTC()}}
		for _, in := range old {
			is := InputState{ResourceType: in.ResourceType, URL: source.Redact(in.URL), Status: StatusFinished, Total: 5}
			if hashes {
				is.URLHash = HashURL(in.URL)
			}
			st.Inputs = append(st.Inputs, is)
		}
		st.Inputs[3].Status, st.Inputs[3].Error = StatusFailed, "HTTP 500"
		return st
	}
	now := &Manifest{Inputs: []Input{
		{"Patient", "https://h/p.ndjson?f=p3", nil},                  // another query
		{"Condition", "https://h/c.ndjson?X-Amz-Signature=two", nil}, // a new signed URL
		{"Observation", "/data/o.ndjson", nil},
		{"Encounter", "https://h/e.ndjson?f=e", nil},
		{"Basic", "https://h/b.ndjson", nil},
	}}
	for _, tc := range []struct {
		hashes bool
		want   []string
	}{
		{true, []string{StatusPending, StatusPending, StatusFinished, StatusPending, StatusFinished}},
		// Without hashes only what redaction left whole can be known unchanged.
		{false, []string{StatusPending, StatusPending, StatusFinished, StatusPending, StatusFinished}},
	} {
		writeState(t, s, state(tc.hashes))
		st, err := Options{Store: s}.begin(now, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, in := range st.Inputs {
			if in.Status != tc.want[i] {
				t.Errorf("hashes %v: input %d (%s) is %s, want %s", tc.hashes, i, in.URL, in.Status, tc.want[i])
			}
			if in.URLHash != HashURL(now.Inputs[i].URL) {
				t.Errorf("hashes %v: input %d has hash %q, want that of %s", tc.hashes, i, in.URLHash, now.Inputs[i].URL)
			}
			if in.Status == StatusFinished && in.Total != 5 {
				t.Errorf("hashes %v: input %d kept as finished lost its total: %+v", tc.hashes, i, in)
			}
		}
	}
	// Unchanged, every finished input stays finished.
	writeState(t, s, state(true))
	st, err := Options{Store: s}.begin(&Manifest{Inputs: old}, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range st.Inputs {
		if want := map[bool]string{true: StatusPending, false: StatusFinished}[i == 3]; in.Status != want {
			t.Errorf("unchanged input %d is %s, want %s", i, in.Status, want)
		}
	}
	// Another list of inputs (as redacted) is refused, as it always was.
	other := &Manifest{Inputs: append(append([]Input(nil), old[:4]...), Input{"Basic", "https://h/other.ndjson", nil})}
	if _, err := (Options{Store: s}).begin(other, "x", nil); err == nil || !strings.Contains(err.Error(), "recorded other inputs") {
		t.Errorf("other inputs: %v", err)
	}
	// The state file holds no query, only hashes.
	data, err := os.ReadFile(filepath.Join(s.Dir, "x.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"f=p1", "X-Amz-Signature", "one"} {
		if strings.Contains(string(data), q) {
			t.Errorf("the state file holds %q", q)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "synthea", "import-20260101-000000-abcdef", "A.b_c-9", strings.Repeat("x", 128)} {
		if err := CheckID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", "../x", "a/b", `a\b`, ".hidden", "-x", "_x", "x y", "x\x1b", strings.Repeat("x", 129), "é"} {
		if err := CheckID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("%q: %v, want ErrBadID", id, err)
		}
	}
	s := Store{Dir: t.TempDir()}
	if _, err := s.Read("../x"); !errors.Is(err, ErrBadID) {
		t.Errorf("Read: %v", err)
	}
	if _, err := s.Lock("../x"); !errors.Is(err, ErrBadID) {
		t.Errorf("Lock: %v", err)
	}
	if _, err := s.OpenLog("../x"); !errors.Is(err, ErrBadID) {
		t.Errorf("OpenLog: %v", err)
	}
	if err := s.Write(&State{ID: "../x"}); !errors.Is(err, ErrBadID) {
		t.Errorf("Write: %v", err)
	}
}

// A symbolic link planted in the state folder is not followed: what it
// names is neither written, nor created, nor read.
func TestStoreRefusesSymlinks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges on Windows")
	}
	dir := t.TempDir()
	s := Store{Dir: filepath.Join(dir, "state")}
	if err := os.Mkdir(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	const content = "precious\n"
	if err := os.WriteFile(target, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := json.Marshal(State{ID: "j", Status: StatusFinished})
	if err := os.WriteFile(filepath.Join(dir, "other.json"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(name, to string) {
		t.Helper()
		if err := os.Symlink(to, filepath.Join(s.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("l.log", target)
	link("k.lock", target)
	link("d.lock", filepath.Join(dir, "dangling"))
	link("j.json", filepath.Join(dir, "other.json"))

	isLinkErr := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "is a symbolic link: not followed") {
			t.Errorf("%s: %v, want a symbolic link refused", what, err)
		}
	}
	f, err := s.OpenLog("l")
	if err == nil {
		f.WriteString("written\n")
		f.Close()
	}
	isLinkErr("OpenLog", err)
	_, err = s.Lock("k")
	isLinkErr("Lock", err)
	_, err = s.Lock("d")
	isLinkErr("Lock (dangling)", err)
	_, err = s.Read("j")
	isLinkErr("Read", err)
	if s.Running("k") {
		t.Error("Running through a link")
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List() = %v, %v: a linked state is listed", list, err)
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != content {
		t.Errorf("the link's target now holds %q (%v)", data, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dangling")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dangling link's target was made: %v", err)
	}
	// Write replaces a linked state file rather than writing through it.
	link("w.json", target)
	writeState(t, s, &State{ID: "w", Status: StatusFinished})
	if data, err := os.ReadFile(target); err != nil || string(data) != content {
		t.Errorf("Write wrote through a link: %q (%v)", data, err)
	}
	if st, err := s.Read("w"); err != nil || st.Status != StatusFinished {
		t.Errorf("Read after Write: %v, %v", st, err)
	}
}

// The state file is written about once a second while inputs load, not
// on every change: with many quick inputs, rewriting it was most of the
// work. Progress is still called at the start and at the end.
func TestRunCoalescesWrites(t *testing.T) {
	const n = 300
	m := &Manifest{ID: "many"}
	for i := range n {
		m.Inputs = append(m.Inputs, Input{"Patient", fmt.Sprintf("/nonexistent/p%d.ndjson", i), nil})
	}
	var writes atomic.Int64
	var shown []State
	s := Store{Dir: t.TempDir()}
	o := Options{
		// Nothing listens on port 1: every input fails at once, without a database.
		DSN: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", Store: s, Parallel: 2,
		DB:         pg.Identity{Database: "none", Host: "127.0.0.1", Port: 1}, // as if read before: Run does not connect first
		Progress:   func(st State) { shown = append(shown, st) },
		writeState: func(st *State) error { writes.Add(1); return s.Write(st) },
	}
	start := time.Now()
	st, err := Run(context.Background(), m, "many", o)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusFailed {
		t.Errorf("status %s, want failed", st.Status)
	}
	// Once at the start, once at the end, at most once a second between.
	if max := 2 + int64(elapsed/saveEvery) + 1; writes.Load() > max {
		t.Errorf("%d inputs in %v: %d state file writes, want at most %d", n, elapsed, writes.Load(), max)
	}
	saved, err := s.Read("many")
	if err != nil {
		t.Fatal(err)
	}
	if saved.Status != StatusFailed || len(saved.Inputs) != n || saved.Inputs[n-1].Status != StatusFailed || saved.Time.End == nil {
		t.Errorf("the state file at the end: %s, %d inputs, last %+v", saved.Status, len(saved.Inputs), saved.Inputs[n-1])
	}
	if len(shown) < 2 || shown[0].Inputs[0].Status != StatusPending || shown[len(shown)-1].Status != StatusFailed {
		t.Errorf("Progress saw %d states", len(shown))
	}
}

// While inputs load, a change reaches the state file within about
// saveEvery, and a burst of changes makes one write, not one each.
func TestTickWritesWhatChanged(t *testing.T) {
	var (
		mu     sync.Mutex
		writes int
		last   State
		wrote  = make(chan struct{}, 1)
	)
	r := &runner{
		st:        &State{ID: "t", Inputs: make([]InputState, 3)},
		saveEvery: 20 * time.Millisecond,
		write: func(st *State) error {
			mu.Lock()
			writes, last = writes+1, *st
			mu.Unlock()
			select {
			case wrote <- struct{}{}:
			default:
			}
			return nil
		},
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r.tick(stop)
	}()
	start := time.Now()
	for i := range 10000 {
		r.update(i%3, func(in *InputState) { in.Total++ })
	}
	burst := time.Since(start)
	// The last change is written by a tick after the burst.
	for {
		mu.Lock()
		total := int64(0)
		for _, in := range last.Inputs {
			total += in.Total
		}
		mu.Unlock()
		if total == 10000 {
			break
		}
		select {
		case <-wrote:
		case <-time.After(10 * time.Second):
			t.Fatal("the last change was not written")
		}
	}
	close(stop)
	<-done
	mu.Lock()
	n := writes
	mu.Unlock()
	if max := int(burst/r.saveEvery) + 3; n > max {
		t.Errorf("10000 changes in %v: %d writes, want at most %d", burst, n, max)
	}
	// Nothing changed since: no more writes.
	if err := r.save(false); err != nil || writes != n {
		t.Errorf("save without a change wrote (%v)", err)
	}
}

// BenchmarkStoreWrite is one state file write of a 5,000-input import
// (about 1.5 MB of JSON, fsynced): what Run pays about once a second.
func BenchmarkStoreWrite(b *testing.B) {
	s := Store{Dir: b.TempDir()}
	st := &State{ID: "bench", Status: StatusInProgress, Time: StateTime{Start: time.Now().UTC()}}
	for i := range 5000 {
		u := fmt.Sprintf("/data/in/p%04d.ndjson", i)
		st.Inputs = append(st.Inputs, InputState{ResourceType: "Patient", URL: u, URLHash: HashURL(u), Status: StatusFinished, Total: 1, BytesRead: 52, BytesTotal: 52, Duration: 7})
	}
	for b.Loop() {
		if err := s.Write(st); err != nil {
			b.Fatal(err)
		}
	}
}

// An export's import id: its name, and a hash of its path and the database,
// the same each time, another for another database (staging, then
// production), short enough for status's table.
func TestIDFor(t *testing.T) {
	staging := pg.Identity{SystemID: "7714750139950438522", OID: 16384, Database: "staging", Host: "db1", Port: 5432}
	prod := pg.Identity{SystemID: "7714750139950438523", OID: 16385, Database: "prod", Host: "db2", Port: 5432}
	a := IDFor("/exports/full/manifest.json", staging)
	if !regexp.MustCompile(`^full-[0-9a-f]{8}$`).MatchString(a) {
		t.Errorf("id %q", a)
	}
	if b := IDFor("/exports/full/manifest.json", staging); b != a {
		t.Errorf("the same import: %q, then %q", a, b)
	}
	for _, other := range []string{IDFor("/exports/full/manifest.json", prod), IDFor("/old/full/manifest.json", staging)} {
		if other == a || !strings.HasPrefix(other, "full-") {
			t.Errorf("another import: %q, and %q", a, other)
		}
	}
	for path, name := range map[string]string{
		"/exports/2026-12-01":           "2026-12-01",
		"/exports/hl7.json":             "hl7.json",
		"/e/a b:c/manifest.json":        "a-b-c",
		"/e/" + strings.Repeat("x", 99): strings.Repeat("x", 60),
		"/manifest.json":                "export",
		"/e/..manifest/manifest.json":   "manifest",
	} {
		if id := IDFor(path, staging); !strings.HasPrefix(id, name+"-") || len(id) != len(name)+9 || CheckID(id) != nil {
			t.Errorf("%s: id %q, want %s-HASH", path, id, name)
		}
	}
}
