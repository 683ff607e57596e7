package bulkimport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	m, err := ParseManifest([]byte(yaml), "/data/m", "/data/m/m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "synthea" || !m.FHIR || !m.Update || m.ContentEncoding != "gzip" || m.Path != "/data/m/m.yaml" {
		t.Errorf("manifest %+v", m)
	}
	want := []Input{
		{"Encounter", "https://storage.example/Encounter.ndjson.gz?sig=x"},
		{"Patient", "/data/m/Patient.ndjson.gz"},
		{"Condition", "/abs/Condition.ndjson"},
	}
	for i, in := range want {
		if m.Inputs[i] != in {
			t.Errorf("input %d = %+v, want %+v", i, m.Inputs[i], in)
		}
	}

	// JSON, and the HL7 proposal's spelling.
	m, err = ParseManifest([]byte(`{"inputFormat":"application/ndjson","inputSource":"https://x","storageDetail":{"type":"https"},"input":[{"type":"Patient","url":"p.ndjson"}]}`), "/d", "")
	if err != nil {
		t.Fatal(err)
	}
	if m.FHIR || m.ID != "" || len(m.Inputs) != 1 || m.Inputs[0] != (Input{"Patient", "/d/p.ndjson"}) {
		t.Errorf("manifest %+v", m)
	}
	if m, err := ParseManifest([]byte("type: fhir\ninputs: [{resourceType: A, url: a}]"), "/d", ""); err != nil || !m.FHIR {
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
		"inputs: [{resourceType: A, url: a}]\nupdate: yes!": "manifest: update: want true or false",
		"inputs: [{resourceType: A, url: a}]\ninput: []":    "manifest: both inputs and input: give one",
		"":       "manifest: empty",
		"[1, 2]": "manifest: not JSON or YAML: yaml: unmarshal errors: line 1: cannot unmarshal !!seq into map[string]interface {}",
		"inputs: [{resourceType: A, url: 'ftp://h/x?k=s'}]": "manifest: inputs[0].url ftp://h/x?…: only http(s) URLs and local paths",
	} {
		_, err := ParseManifest([]byte(in), "/d", "")
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
