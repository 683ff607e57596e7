package bulkdata

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func count(n int64) *int64 { return &n }

// A manifest as fhirbulk export writes one (output, deleted and error
// files, its extension) reads back the same, and ReadChain takes the next
// export's start from it.
func TestManifestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 29, 2, 0, 0, 123456000, time.UTC)
	m := &Manifest{
		TransactionTime: FormatTime(at.Add(-time.Microsecond)),
		Request:         "fhirbulk export --since-manifest 'a b/manifest.json' out",
		Output: []File{
			{Type: "Observation", URL: Name{Type: "Observation", Split: true, Gzip: true}.String(), Count: count(10)},
			{Type: "Observation", URL: Name{Type: "Observation", Split: true, Part: 1, Gzip: true}.String(), Count: count(3)},
			{Type: "Patient", URL: "Patient.ndjson.gz", Count: count(13)},
		},
		Deleted: []File{{Type: "Bundle", URL: Name{Kind: Deleted, Type: "Patient", Gzip: true}.String(), Count: count(2)}},
		Error:   []File{{Type: "OperationOutcome", URL: Name{Kind: Errors, Gzip: true}.String(), Count: count(1)}},
	}
	ext := Ext{Format: "aidbox", Since: FormatTime(at.Add(-time.Hour)), Snapshot: FormatTime(at), Watermark: FormatTime(at),
		Version: "v1.2.3", Database: &Database{SystemIdentifier: "7312", Name: "db \"x\"", OID: 5, Host: "h", Port: 5432},
		Types: []string{"Observation", "Patient"}, Follows: "/exports/2026-11-28/manifest.json"}
	m.SetExt(ext)
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !IsManifest(data) || !strings.HasSuffix(string(data), "}\n") {
		t.Fatalf("not a manifest file:\n%s", data)
	}
	got, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := got.Ext(); !ok || !reflect.DeepEqual(e, ext) {
		t.Errorf("extension %+v, %v; want %+v", e, ok, ext)
	}
	got.Extension, m.Extension = nil, nil // indented as written: compared as read
	if !reflect.DeepEqual(got, m) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, m)
	}

	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w, e, err := ReadChain(context.Background(), path)
	if err != nil || !w.Equal(at) || !reflect.DeepEqual(e, ext) {
		t.Errorf("ReadChain: %v, %+v, %v; want %v, %+v", w, e, err, at, ext)
	}
}

// An export of nothing still lists its files as arrays, never null: the
// readers of other servers' manifests expect arrays.
func TestManifestEmptyLists(t *testing.T) {
	m := &Manifest{TransactionTime: "2026-01-01T00:00:00.000000Z"}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"output": []`, `"deleted": []`, `"error": []`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("no %s in\n%s", want, data)
		}
	}
	if line, err := json.Marshal(m); err != nil || !strings.Contains(string(line), `"output":[],"deleted":[],"error":[]`) {
		t.Errorf("json.Marshal: %s, %v", line, err)
	}
	if strings.Contains(string(data), "extension") || strings.Contains(string(data), "outputFormat") {
		t.Errorf("empty members written:\n%s", data)
	}
}

// Other servers' manifests are read too (unknown members ignored); what is
// not one is refused, saying so.
func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(`{"transactionTime":"2026-01-01T00:00:00Z","request":"https://s/$export",
		"requiresAccessToken":true,"outputFormat":"application/fhir+ndjson","x":1,
		"output":[{"type":"Patient","url":"https://s/files/1.Patient.ndjson"}],"error":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Output) != 1 || m.Output[0].Count != nil || m.Output[0].URL != "https://s/files/1.Patient.ndjson" || !m.RequiresAccessToken ||
		m.OutputFormat != "application/fhir+ndjson" {
		t.Errorf("read %+v", m)
	}
	if _, ok := m.Ext(); ok {
		t.Errorf("an extension found in a manifest without one")
	}
	for _, bad := range []string{`[]`, `{"output":{}}`, `{"output":[{"count":"1"}]}`, `{`, `{"output":[{"count":1.5}]}`} {
		if _, err := ParseManifest([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "not a bulk data manifest: ") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	for doc, want := range map[string]bool{`{"output":[]}`: true, `{"inputs":[]}`: false, `{"output":null}`: true, `x`: false} {
		if IsManifest([]byte(doc)) != want {
			t.Errorf("IsManifest(%s) = %v", doc, !want)
		}
	}
}

// ReadChain says what is missing from a manifest an export cannot go on
// from.
func TestReadChainRefuses(t *testing.T) {
	dir := t.TempDir()
	for doc, want := range map[string]string{
		`{"output":[]}`: "not a bulk data manifest: no transactionTime",
		`{"transactionTime":"2026-01-01T00:00:00Z","output":[]}`:                                                 ErrNoWatermark.Error(),
		`{"transactionTime":"2026-01-01T00:00:00Z","output":[],"extension":{"fhirbulk":{"watermark":"monday"}}}`: `watermark "monday": not an RFC 3339 instant`,
		`{"id":"1"`: "not a bulk data manifest: unexpected end of JSON input",
	} {
		path := filepath.Join(dir, "m.json")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := ReadChain(context.Background(), path)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v; want %s", doc, err, want)
		}
		if want == ErrNoWatermark.Error() && !errors.Is(err, ErrNoWatermark) {
			t.Errorf("%s: %v is not ErrNoWatermark", doc, err)
		}
	}
}
