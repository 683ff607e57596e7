package ndjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `a"b\c`, "line\nbreak\ttab\rcr", "\x00\x01\x1f\x7f", "Zoë 日本 😀", "\b\f", "</div>&"} {
		got := AppendString(nil, []byte(s))
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("AppendString(%q) = %s: decodes to %q, %v", s, got, back, err)
		}
	}
	if got := string(AppendString(nil, []byte("é<>&"))); got != `"é<>&"` {
		t.Errorf("non-ASCII and HTML characters must pass unchanged, got %s", got)
	}
}

func TestCompactObject(t *testing.T) {
	keys := []string{"meta", "id"}
	for _, tc := range []struct {
		in, want, meta, id string
	}{
		{`{}`, `{}`, "", ""},
		{` { } `, `{}`, "", ""},
		{`{"a": 1, "meta": {"x": [1, 2]}, "b": "s p a c e"}`, `{"a":1,"meta":{"x":[1,2]},"b":"s p a c e"}`, `"meta":{"x":[1,2]}`, ""},
		{`{"meta": 1}`, `{"meta":1}`, `"meta":1`, ""},
		{"{\n\t\"id\" : \"x\" ,\r\n\"meta\":null}", `{"id":"x","meta":null}`, `"meta":null`, `"id":"x"`},
		// Keys only count at the top level, and never inside strings.
		{`{"a": {"meta": 1, "id": 2}, "s": "\"meta\": 3", "t": ["id"]}`, `{"a":{"meta":1,"id":2},"s":"\"meta\": 3","t":["id"]}`, "", ""},
		// Escaped backslash right before a closing quote.
		{`{"a": "x\\", "meta": "\\\""}`, `{"a":"x\\","meta":"\\\""}`, `"meta":"\\\""`, ""},
		{`{"metadata": 1, "i": 2}`, `{"metadata":1,"i":2}`, "", ""},
	} {
		spans := make([]Span, len(keys))
		got, err := CompactObject([]byte("prefix"), []byte(tc.in), keys, spans)
		if err != nil {
			t.Errorf("CompactObject(%s): %v", tc.in, err)
			continue
		}
		if string(got) != "prefix"+tc.want {
			t.Errorf("CompactObject(%s) = %s, want %s", tc.in, got[6:], tc.want)
		}
		checkInPlace(t, []byte(tc.in), keys, got[6:], spans, 6)
		for k, want := range []string{tc.meta, tc.id} {
			var member string
			if spans[k].Found() {
				member = string(got[spans[k].Start:spans[k].End])
			}
			if member != want {
				t.Errorf("CompactObject(%s): member %q = %q, want %q", tc.in, keys[k], member, want)
			}
		}
	}
	for _, bad := range []string{``, `[]`, `"s"`, `{"a": "unterminated}`, `{"a": 1`, `{"a": 1} x`, `{"a": "x\"}`} {
		if _, err := CompactObject(nil, []byte(bad), keys, make([]Span, 2)); err == nil {
			t.Errorf("CompactObject(%s): no error", bad)
		}
	}
}

func TestAppendMembersExcept(t *testing.T) {
	keys := []string{"meta", "id", "resourceType"}
	for in, want := range map[string]string{
		`{}`:                      ``,
		`{"a":1}`:                 `,"a":1`,
		`{"meta":{}}`:             ``,
		`{"meta":{},"a":1}`:       `,"a":1`,
		`{"a":1,"meta":{}}`:       `,"a":1`,
		`{"a":1,"meta":{},"b":2}`: `,"a":1,"b":2`,
		`{"id":"x","a":[","],"meta":1,"resourceType":"P","b":","}`: `,"a":[","],"b":","`,
		`{"resourceType":"P","meta":1,"id":"x"}`:                   ``,
		`{"a":",","resourceType":"P","id":"x","b":2}`:              `,"a":",","b":2`,
	} {
		spans := make([]Span, len(keys))
		obj, err := CompactObject(nil, []byte(in), keys, spans)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(AppendMembersExcept(nil, obj, spans...)); got != want {
			t.Errorf("AppendMembersExcept(%s) = %s, want %s", in, got, want)
		}
		if got := string(RemoveMembers(obj, spans...)); got != "{"+strings.TrimPrefix(want, ",")+"}" {
			t.Errorf("RemoveMembers(%s) = %s, want {%s}", in, got, strings.TrimPrefix(want, ","))
		}
	}
}

// checkInPlace checks that CompactObject over src in place makes want,
// the members of keys at spans (offsets into want, shifted by off).
func checkInPlace(t *testing.T, src []byte, keys []string, want []byte, spans []Span, off int) {
	t.Helper()
	buf := bytes.Clone(src)
	in := make([]Span, len(keys))
	got, err := CompactObject(buf[:0], buf, keys, in)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("CompactObject(%s) in place = %s, %v; want %s", src, got, err, want)
	}
	for k := range in {
		if in[k].Found() != spans[k].Found() || in[k].Found() && (in[k].Start+off != spans[k].Start || in[k].End+off != spans[k].End) {
			t.Fatalf("CompactObject(%s) in place: span of %q %v, want %v (less %d)", src, keys[k], in[k], spans[k], off)
		}
	}
}

func TestMembers(t *testing.T) {
	var got []string
	err := Members([]byte(` { "a" : 1 , "b\"c":{"x":[1,"}"]}, "d":"e" } `), func(k, v []byte) bool {
		got = append(got, string(k)+"="+string(v))
		return true
	})
	want := []string{`a=1`, `b\"c={"x":[1,"}"]}`, `d="e"`}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Members = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{`[]`, `{"a"}`, `{"a":}`, `{"a":1 "b":2}`, `{"a":1`} {
		if err := Members([]byte(bad), func(k, v []byte) bool { return true }); err == nil {
			t.Errorf("Members(%s): no error", bad)
		}
	}
}

// FuzzCompactObject checks CompactObject against encoding/json.Compact on
// any valid JSON object: the same bytes but for top-level keys with escapes
// (canonical when they decode exactly, else as they were), the members of
// keys found where encoding/json finds them, a duplicate an error.
func FuzzCompactObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a": [1, {"b": "c\"d\\"}], "meta": {"x": null}}`, `{"id":"é","n":-1.5e3}`,
		`{"\u0069d": "x", "m\u0065ta": 1, "\ud800": 2, "a\/b": {"\u0069d": 3}}`, `{"id":1,"\u0069d":2}`} {
		f.Add(s)
	}
	keys := []string{"meta", "id"}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{") {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, []byte(s)); err != nil {
			return
		}
		// The members as encoding/json.Compact writes them, keys decoded.
		var raws, values [][]byte
		count := map[string]int{}
		if err := Members(want.Bytes(), func(k, v []byte) bool {
			raws, values = append(raws, k), append(values, v)
			if text, ok := refKeyText(string(k)); ok {
				count[text]++
			}
			return true
		}); err != nil {
			t.Fatalf("Members(%s): %v", want.Bytes(), err)
		}
		spans := make([]Span, len(keys))
		got, err := CompactObject(nil, []byte(s), keys, spans)
		if count["meta"] > 1 || count["id"] > 1 {
			if err == nil || !strings.Contains(err.Error(), "duplicate key") {
				t.Fatalf("CompactObject(%q): %v, want a duplicate key error", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("CompactObject(%q): %v", s, err)
		}
		checkInPlace(t, []byte(s), keys, got, spans, 0)
		except := strings.TrimPrefix(string(AppendMembersExcept(nil, got, spans...)), ",")
		if removed := RemoveMembers(bytes.Clone(got), spans...); string(removed) != "{"+except+"}" {
			t.Fatalf("RemoveMembers(%s) = %s, want {%s}", got, removed, except)
		}
		if !strings.Contains(s, `\`) && !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("CompactObject(%q) = %s, want %s", s, got, want.Bytes())
		}
		n := 0
		if err := Members(got, func(k, v []byte) bool {
			wantKey := raws[n]
			if text, ok := refKeyText(string(wantKey)); ok && bytes.IndexByte(wantKey, '\\') >= 0 {
				wantKey = AppendString(nil, []byte(text))
				wantKey = wantKey[1 : len(wantKey)-1]
			}
			if !bytes.Equal(k, wantKey) || !bytes.Equal(v, values[n]) {
				t.Fatalf("CompactObject(%q): member %d is %s:%s, want %s:%s", s, n, k, v, wantKey, values[n])
			}
			n++
			return true
		}); err != nil || n != len(raws) {
			t.Fatalf("CompactObject(%q) = %s: %d members, %v; want %d", s, got, n, err, len(raws))
		}
		for k, key := range keys {
			if spans[k].Found() != (count[key] == 1) {
				t.Fatalf("CompactObject(%q): %q found %v", s, key, spans[k].Found())
			}
			for n, raw := range raws {
				if text, ok := refKeyText(string(raw)); ok && text == key {
					if member := got[spans[k].Start:spans[k].End]; string(member) != `"`+key+`":`+string(values[n]) {
						t.Fatalf("CompactObject(%q): %q at %s, want its member %d", s, key, member, n)
					}
				}
			}
		}
	})
}

func BenchmarkCompactObject(b *testing.B) {
	line := []byte(`{"code": {"text": "Weight", "coding": [{"code": "29463-7", "system": "http://loinc.org", "display": "Body Weight"}]}, "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]}, "issued": "2016-09-13T06:53:25.410+00:00", "status": "final", "subject": {"reference": "urn:uuid:742fc10a-c565-f636-3c05-5dcd28672194"}, "category": [{"coding": [{"code": "vital-signs", "system": "http://terminology.hl7.org/CodeSystem/observation-category", "display": "vital-signs"}]}], "encounter": {"reference": "urn:uuid:70574389-d5e7-37eb-8e2f-deb5b2622840"}, "valueQuantity": {"code": "kg", "unit": "kg", "value": 79.7, "system": "http://unitsofmeasure.org"}, "effectiveDateTime": "2016-09-13T06:53:25+00:00"}`)
	keys := []string{"meta", "id", "resourceType"}
	spans := make([]Span, 3)
	var dst []byte
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		dst, _ = CompactObject(dst[:0], line, keys, spans)
	}
}
