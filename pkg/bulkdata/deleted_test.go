package bulkdata

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A deleted line as export writes it is valid JSON, the IG's shape, and
// reads back as the resource, version and time written, whatever the id
// holds (quotes, backslashes, control characters, non-ASCII).
func TestDeletedRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 29, 2, 0, 0, 123456000, time.FixedZone("x", 3600))
	var p DeletedParser
	for _, id := range []string{"123", "a-b.c", `q"uote`, `back\slash`, "tab\tnl\nnul\x00", "ünï/cødé", "</script>", "\u2028"} {
		line := AppendDeleted([]byte("junk"), "Patient", id, 42, at)[len("junk"):]
		if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
			t.Fatalf("%q: not one line: %q", id, line)
		}
		var doc struct {
			ResourceType, Type string
			Meta               struct{ VersionID, LastUpdated string }
			Entry              []struct{ Request struct{ Method, URL string } }
		}
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatalf("%q: %v: %s", id, err, line)
		}
		if doc.ResourceType != "Bundle" || doc.Type != "transaction" || doc.Meta.VersionID != "42" || doc.Meta.LastUpdated != "2026-11-29T01:00:00.123456Z" ||
			len(doc.Entry) != 1 || doc.Entry[0].Request.Method != "DELETE" || doc.Entry[0].Request.URL != "Patient/"+id {
			t.Errorf("%q: %+v", id, doc)
		}
		got, err := p.Parse(line)
		if strings.Contains(id, "/") {
			// Written as it is, but not one resource's url: refused, not
			// taken for another id.
			if err == nil {
				t.Errorf("%q: read back as %+v", id, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if want := []Deletion{{"Patient", id}}; !reflect.DeepEqual(got.Deletions, want) || string(got.VersionID) != `"42"` || string(got.LastUpdated) != `"2026-11-29T01:00:00.123456Z"` {
			t.Errorf("%q: read back %+v (%s, %s)", id, got.Deletions, got.VersionID, got.LastUpdated)
		}
	}
}

// Other servers' lines: several entries, absolute urls, no meta, any
// whitespace; and the lines that are no Bundle of DELETEs, each refused
// with its reason.
func TestDeletedParse(t *testing.T) {
	p := DeletedParser{ValidRef: func(typ, id string) bool { return typ != "Foo" && len(id) <= 8 }}
	for _, c := range []struct {
		line string
		want []Deletion
		err  string
	}{
		{line: `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}},{"request":{"url":"https://s/fhir/Observation/o-2/","method":"delete"}}]}`,
			want: []Deletion{{"Patient", "1"}, {"Observation", "o-2"}}},
		{line: " { \"entry\" : [ ] , \"meta\" : 5 } ", want: []Deletion{}},
		{line: `{"entry":[{"request":{"method":"DELETE","url":"Patient/\u0031"}}]}`, want: []Deletion{{"Patient", "1"}}},

		{line: `{"resourceType":"Bundle"}`, err: `no "entry": want a Bundle of DELETE requests`},
		{line: `{"entry":{}}`, err: `"entry" is not an array`},
		{line: `{"entry":[{"request":{"method":"PUT","url":"Patient/1"}}]}`, err: `an entry that is not a DELETE request (method "PUT")`},
		{line: `{"entry":[{"fullUrl":"Patient/1"}]}`, err: `an entry that is not a DELETE request (method "")`},
		{line: `{"entry":[{"request":{"method":"DELETE","url":"Patient/1"}},{"request":{"method":"DELETE","url":"Patient?name=x"}}]}`, err: `DELETE of "Patient?name=x": want TYPE/ID`},
		{line: `{"entry":[{"request":{"method":"DELETE","url":"Patient"}}]}`, err: `DELETE of "Patient": want TYPE/ID`},
		{line: `{"entry":[{"request":{"method":"DELETE","url":"patient/1"}}]}`, err: `DELETE of "patient/1": want TYPE/ID`},
		{line: `{"entry":[{"request":{"method":"DELETE","url":"Patient/1#x"}}]}`, err: `DELETE of "Patient/1#x": want TYPE/ID`},
		{line: `{"entry":[{"request":{"method":"DELETE","url":"Foo/1"}}]}`, err: `DELETE of "Foo/1": want TYPE/ID`},                         // ValidRef
		{line: `{"entry":[{"request":{"method":"DELETE","url":"Patient/123456789"}}]}`, err: `DELETE of "Patient/123456789": want TYPE/ID`}, // ValidRef
		{line: `{"entry":[`, err: "invalid JSON"},
		{line: `[1]`, err: "not a JSON object"},
	} {
		got, err := p.Parse([]byte(c.line))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %+v, %v; want an error with %q", c.line, got, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.line, err)
		case c.err == "" && !reflect.DeepEqual(got.Deletions, c.want):
			t.Errorf("%s: %+v; want %+v", c.line, got.Deletions, c.want)
		case c.err == "" && (got.VersionID != nil || got.LastUpdated != nil):
			t.Errorf("%s: a meta found: %s, %s", c.line, got.VersionID, got.LastUpdated)
		}
	}
}

func TestParseDeleteURL(t *testing.T) {
	for url, want := range map[string][2]string{
		"Patient/1":                          {"Patient", "1"},
		"Patient/1/":                         {"Patient", "1"},
		"https://s/fhir/Patient/a.b":         {"Patient", "a.b"},
		"Patient/1/_history/2":               {}, // "_history" is no type
		"/1":                                 {},
		"Patient/":                           {},
		"Patient//":                          {},
		"Patient/1?_cascade=delete":          {},
		"":                                   {},
		"http://s/fhir/Observation/o%201":    {"Observation", "o%201"}, // as written: ids have no escapes
		"MedicationRequest/x" + "/Patient/9": {"Patient", "9"},
	} {
		typ, id, ok := ParseDeleteURL(url)
		if ok != (want[0] != "") || typ != want[0] || id != want[1] {
			t.Errorf("%q: %q %q %v; want %q", url, typ, id, ok, want)
		}
	}
}
