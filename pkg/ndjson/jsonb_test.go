package ndjson

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// jsonbText writes compact JSON the way PostgreSQL prints a jsonb value:
// one space after each ',' and ':' outside strings.
func jsonbText(compact []byte) []byte {
	var b []byte
	in := false
	for i := 0; i < len(compact); i++ {
		c := compact[i]
		b = append(b, c)
		switch {
		case in && c == '\\':
			i++
			b = append(b, compact[i])
		case c == '"':
			in = !in
		case !in && (c == ',' || c == ':'):
			b = append(b, ' ')
		}
	}
	return b
}

// sameAsCompactObject fails t unless CompactJSONB gives for src what
// CompactObject gives: the text, the spans and the error.
func sameAsCompactObject(t *testing.T, src []byte, keys []string) {
	t.Helper()
	want := make([]Span, len(keys))
	got := make([]Span, len(keys))
	prefix := []byte("xx") // spans count from the start of dst
	w, werr := CompactObject(append([]byte(nil), prefix...), src, keys, want)
	g, gerr := CompactJSONB(append([]byte(nil), prefix...), src, keys, got)
	if !bytes.Equal(w, g) || (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
		t.Fatalf("CompactJSONB(%q)\n = %q, %v\nwant %q, %v", src, g, gerr, w, werr)
	}
	for k := range keys {
		if want[k] != got[k] {
			t.Fatalf("CompactJSONB(%q): span of %q = %v, want %v", src, keys[k], got[k], want[k])
		}
	}
}

var jsonbKeys = []string{"meta", "id", "resourceType"}

func TestCompactJSONBRealResources(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/sample/*.ndjson")
	if len(files) == 0 {
		t.Fatal("no testdata/sample/*.ndjson")
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.Lines(data) {
			line = bytes.TrimSuffix(line, []byte("\n"))
			if len(line) == 0 {
				continue
			}
			compact, err := CompactObject(nil, line, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			sameAsCompactObject(t, jsonbText(compact), jsonbKeys)
			n++
		}
	}
	t.Logf("%d resources", n)
}

var jsonbCases = []string{
	`{}`,
	`{"id": "a"}`,
	`{"a": 1, "id": "x", "meta": {"versionId": "1", "tag": [{"code": "a, b: c"}]}, "resourceType": "Patient"}`,
	`{"a": "say \"hi\", ok", "b": "\\", "c": "\\\"", "meta": {}}`,
	`{"a": [1, 2.5e-3, true, false, null], "b": {"c": {"d": []}}}`,
	`{"meta": "not an object", "z": 1}`,
	`{"name": [{"given": ["Ana", "María"]}], "text": {"div": "<div>a\nb</div>"}}`,
	// Not jsonb's text: taken by CompactObject, results and errors alike.
	`{"id":"a"}`,
	`{"id" : "a"}`,
	`{"id":  "a"}`,
	`{"id": "a" }`,
	"{\"id\":\n\"a\"}",
	"{\"id\":\t\"a\"}",
	` {"id": "a"}`,
	`{"id": "a"} `,
	`{"id": "a"}x`,
	`{"\u0069d": "a"}`,
	`{"id": "a", "id": "b"}`,
	`{"id": "a"`,
	`{"id": "a`,
	`["id"]`,
	`"id"`,
	``,
	`{`,
	`{"a": "\\\\\\"}`,
}

func TestCompactJSONBCases(t *testing.T) {
	for _, c := range jsonbCases {
		sameAsCompactObject(t, []byte(c), jsonbKeys)
	}
}

func FuzzCompactJSONB(f *testing.F) {
	for _, c := range jsonbCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		sameAsCompactObject(t, src, jsonbKeys)
	})
}
