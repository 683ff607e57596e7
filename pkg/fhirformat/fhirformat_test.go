package fhirformat

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// compact makes test input compact, as the converter expects.
func compact(t testing.TB, s string) []byte {
	t.Helper()
	out, err := ndjson.CompactObject(nil, []byte(s), nil, nil)
	if err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return out
}

func convert(t testing.TB, dir Direction, in []byte) []byte {
	t.Helper()
	out, err := New(dir).Resource(nil, in)
	if err != nil {
		t.Fatalf("convert %s: %v", in, err)
	}
	return out
}

// The rules, each with a FHIR form and its Aidbox form (both ways).
var rules = []struct{ name, fhir, aidbox string }{
	{"Observation.valueQuantity, numbers kept exactly",
		`{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":{"value":1.50,"unit":"kg","system":"http://unitsofmeasure.org"},"x":123456789012345678901234567890}`,
		`{"resourceType":"Observation","id":"o1","status":"final","value":{"Quantity":{"value":1.50,"unit":"kg","system":"http://unitsofmeasure.org"}},"x":123456789012345678901234567890}`},
	{"Observation.subject",
		`{"resourceType":"Observation","subject":{"reference":"Patient/pt-1","display":"Bob"}}`,
		`{"resourceType":"Observation","subject":{"resourceType":"Patient","id":"pt-1","display":"Bob"}}`},
	{"effective[x] as dateTime, a primitive with its extension",
		`{"resourceType":"Observation","effectiveDateTime":"2020-01-01","_effectiveDateTime":{"extension":[{"url":"u","valueString":"kept as is"}]}}`,
		`{"resourceType":"Observation","effective":{"dateTime":"2020-01-01","_dateTime":{"extension":[{"url":"u","valueString":"kept as is"}]}}}`},
	{"an extension's valueCoding, nested extensions, valueReference",
		`{"resourceType":"Patient","extension":[{"url":"a","valueCoding":{"code":"c"}},{"url":"b","extension":[{"url":"c","valueQuantity":{"value":2}},{"url":"d","valueReference":{"reference":"Organization/org1"}}]}]}`,
		`{"resourceType":"Patient","extension":[{"url":"a","value":{"Coding":{"code":"c"}}},{"url":"b","extension":[{"url":"c","value":{"Quantity":{"value":2}}},{"url":"d","value":{"Reference":{"resourceType":"Organization","id":"org1"}}}]}]}`},
	{"contained, with a #ref",
		`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"Organization/o1"},"deceasedBoolean":false}],"subject":{"reference":"#p1"}}`,
		`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p1","managingOrganization":{"resourceType":"Organization","id":"o1"},"deceased":{"boolean":false}}],"subject":{"localRef":"p1"}}`},
	{"Bundle.entry.resource",
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","valueString":"x","subject":{"reference":"urn:uuid:2"}}}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","value":{"string":"x"},"subject":{"uri":"urn:uuid:2"}}}]}`},
	{"Questionnaire.item.item (contentReference)",
		`{"resourceType":"Questionnaire","item":[{"linkId":"1","item":[{"linkId":"1.1","enableWhen":[{"question":"1","operator":"=","answerBoolean":true}],"initial":[{"valueString":"x"}],"item":[{"linkId":"1.1.1","answerOption":[{"valueCoding":{"code":"y"}}]}]}]}]}`,
		`{"resourceType":"Questionnaire","item":[{"linkId":"1","item":[{"linkId":"1.1","enableWhen":[{"question":"1","operator":"=","answer":{"boolean":true}}],"initial":[{"value":{"string":"x"}}],"item":[{"linkId":"1.1.1","answerOption":[{"value":{"Coding":{"code":"y"}}}]}]}]}]}`},
	{"references that do not split become uri",
		`{"resourceType":"Observation","basedOn":[{"reference":"https://x.org/fhir/Patient/1"},{"reference":"Patient/1/_history/2"},{"reference":"Patient?identifier=a|b"},{"reference":"Foo/1"},{"reference":"Resource/1"},{"reference":"Patient/a_b"},{"reference":"Patient/1","id":"own-id"}]}`,
		`{"resourceType":"Observation","basedOn":[{"uri":"https://x.org/fhir/Patient/1"},{"uri":"Patient/1/_history/2"},{"uri":"Patient?identifier=a|b"},{"uri":"Foo/1"},{"uri":"Resource/1"},{"uri":"Patient/a_b"},{"uri":"Patient/1","id":"own-id"}]}`},
	{"a reference's other members are kept and converted (identifier.assigner)",
		`{"resourceType":"Observation","performer":[{"reference":"Practitioner/p.1","type":"Practitioner","identifier":{"value":"x","assigner":{"reference":"Organization/o-1"}},"_reference":{"extension":[]}}]}`,
		`{"resourceType":"Observation","performer":[{"resourceType":"Practitioner","id":"p.1","type":"Practitioner","identifier":{"value":"x","assigner":{"resourceType":"Organization","id":"o-1"}},"_reference":{"extension":[]}}]}`},
	{"unknown elements, primitive extensions and meta pass through",
		`{"resourceType":"Patient","birthDate":"1970","_birthDate":{"extension":[{"url":"u","valueDateTime":"1970-01-01T00:00:00Z"}]},"custom":{"valueString":"no","subject":{"reference":"Patient/1"}},"meta":{"extension":[{"url":"u","valueString":"m"}],"profile":["p"]}}`,
		`{"resourceType":"Patient","birthDate":"1970","_birthDate":{"extension":[{"url":"u","valueDateTime":"1970-01-01T00:00:00Z"}]},"custom":{"valueString":"no","subject":{"reference":"Patient/1"}},"meta":{"extension":[{"url":"u","valueString":"m"}],"profile":["p"]}}`},
	{"unknown resource types pass through",
		`{"resourceType":"NotAType","valueString":"x","subject":{"reference":"Patient/1"}}`,
		`{"resourceType":"NotAType","valueString":"x","subject":{"reference":"Patient/1"}}`},
	{"strings are never touched",
		`{"resourceType":"Observation","valueString":"a \"q\" \\ \u00e9 日本","note":[{"text":"line\nbreak"}]}`,
		`{"resourceType":"Observation","value":{"string":"a \"q\" \\ \u00e9 日本"},"note":[{"text":"line\nbreak"}]}`},
}

func TestRules(t *testing.T) {
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			if got := convert(t, ToAidbox, compact(t, r.fhir)); string(got) != string(compact(t, r.aidbox)) {
				t.Errorf("to Aidbox:\n got %s\nwant %s", got, compact(t, r.aidbox))
			}
			if got := convert(t, ToFHIR, compact(t, r.aidbox)); string(got) != string(compact(t, r.fhir)) {
				t.Errorf("to FHIR:\n got %s\nwant %s", got, compact(t, r.fhir))
			}
		})
	}
}

func TestChoiceOrderAndStrays(t *testing.T) {
	// _valueString before valueString, apart: one group, where the first of them was.
	in := compact(t, `{"resourceType":"Observation","_valueString":{"id":"e"},"status":"final","valueString":"a"}`)
	want := `{"resourceType":"Observation","value":{"_string":{"id":"e"},"string":"a"},"status":"final"}`
	if got := convert(t, ToAidbox, in); string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	// An Aidbox choice object with a key that is not one of its types is left alone.
	in = compact(t, `{"resourceType":"Observation","value":{"Money":{"value":1}}}`)
	if got := convert(t, ToFHIR, in); string(got) != string(in) {
		t.Errorf("got %s, want it unchanged", got)
	}
	// Aidbox references that would not read back the same way stay as they are.
	in = compact(t, `{"resourceType":"Observation","basedOn":[{"uri":"Patient/1"},{"uri":"#c"},{"resourceType":"Foo","id":"1"},{"resourceType":"Patient","id":"a_b"},{"uri":"Patient/1","id":"own"}]}`)
	want = `{"resourceType":"Observation","basedOn":[{"uri":"Patient/1"},{"uri":"#c"},{"resourceType":"Foo","id":"1"},{"resourceType":"Patient","id":"a_b"},{"reference":"Patient/1","id":"own"}]}`
	if got := convert(t, ToFHIR, in); string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	// valueMoney is not one of Observation.value[x]'s types: it passes through.
	in = compact(t, `{"resourceType":"Observation","valueMoney":{"value":1}}`)
	if got := convert(t, ToAidbox, in); string(got) != string(in) {
		t.Errorf("got %s, want it unchanged", got)
	}
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{`[]`, `"x"`, ``, `{"a":}`, `{"resourceType":"Patient","contained":[{"resourceType":"Patient"`} {
		if _, err := New(ToAidbox).Resource(nil, []byte(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	deep := `{"resourceType":"Questionnaire","item":` + strings.Repeat(`[{"item":`, 300) + `[]` + strings.Repeat(`}]`, 300) + `}`
	if _, err := New(ToAidbox).Resource(nil, []byte(deep)); err == nil {
		t.Error("300 levels of items: no error")
	}
}

// decode reads JSON keeping number literals, for comparisons that are
// order-free for keys and exact for numbers and strings.
func decode(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("invalid JSON out: %v\n%s", err, b)
	}
	return v
}

// roundTrip checks FHIR → Aidbox → FHIR and Aidbox → FHIR → Aidbox on every
// line of an ndjson(.gz) file, or on the 1st, (every+1)th, ... when every >
// 1; it returns how many lines it checked.
func roundTrip(t *testing.T, path string, every int) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatal(err)
		}
	}
	toA, toF := New(ToAidbox), New(ToFHIR)
	fc := newFormatOracle()
	br := bufio.NewReaderSize(r, 1<<20)
	var a, back, again []byte
	n, checked := 0, 0
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
		if len(bytes.TrimSpace(line)) > 0 && (n-1)%every == 0 {
			checked++
			in := compact(t, string(line))
			if a, err = toA.Resource(a[:0], in); err != nil {
				t.Fatalf("%s line %d: to Aidbox: %v", path, n, err)
			}
			if back, err = toF.Resource(back[:0], a); err != nil {
				t.Fatalf("%s line %d: to FHIR: %v", path, n, err)
			}
			if !reflect.DeepEqual(decode(t, in), decode(t, back)) {
				t.Fatalf("%s line %d: FHIR → Aidbox → FHIR differs\n in: %.600s\nout: %.600s", path, n, in, back)
			}
			if again, err = toA.Resource(again[:0], back); err != nil || !bytes.Equal(again, a) {
				t.Fatalf("%s line %d: Aidbox → FHIR → Aidbox differs (%v)", path, n, err)
			}
			fc.check(t, fmt.Sprintf("%s line %d", path, n), in, a)
		}
		if err == io.EOF {
			return checked
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTripSample(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/sample/*.ndjson")
	if len(files) == 0 {
		t.Fatal("no sample files")
	}
	for _, f := range files {
		if n := roundTrip(t, f, 1); n == 0 {
			t.Errorf("%s: no lines", f)
		}
	}
}

// TestRoundTripRealData runs on every line of ../shared/data: Synthea, the
// Synthea HIV set and the 748 official R4 examples. Under -race on every
// 10th: the race detector makes it five to ten times slower (about five
// minutes on a busy 2-core machine, most of scripts/test.sh's unit tests)
// and finds nothing in it, one goroutine converting line after line; go
// test ./pkg/fhirformat without -race checks every line.
func TestRoundTripRealData(t *testing.T) {
	files, _ := filepath.Glob("../../../shared/data/*/*.ndjson.gz")
	var use []string
	for _, f := range files {
		if !strings.Contains(f, "fhir-r4-definitions") {
			use = append(use, f)
		}
	}
	if len(use) == 0 {
		t.Skip("../shared/data is not here: the real-data round trip is skipped")
	}
	every := 1
	if raceEnabled {
		every = 10
	}
	total := 0
	for _, f := range use {
		total += roundTrip(t, f, every)
	}
	t.Logf("%d resources round-tripped (1 line in %d of each file)", total, every)
}

func TestTableIsComplete(t *testing.T) {
	tb := loadTable()
	if len(tb.resources) != 146 {
		t.Errorf("%d concrete resource types, want 146", len(tb.resources))
	}
	for _, name := range []string{"Patient", "Observation", "Bundle", "Parameters"} {
		if tb.resources[name] == nil {
			t.Errorf("%s is not a resource type", name)
		}
	}
	for _, name := range []string{"Resource", "DomainResource", "Quantity", "Foo"} {
		if tb.resources[name] != nil {
			t.Errorf("%s is a resource type", name)
		}
	}
}

// FuzzConvert: no panic on any input, valid JSON out of valid JSON in. (That
// real resources round-trip is shown on real data above; arbitrary input in
// a mix of both formats need not.)
func FuzzConvert(f *testing.F) {
	for _, r := range rules {
		f.Add(r.fhir)
		f.Add(r.aidbox)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in, err := ndjson.CompactObject(nil, []byte(s), nil, nil)
		if err != nil {
			return
		}
		// Never a panic, whatever comes in.
		a, errA := New(ToAidbox).Resource(nil, in)
		New(ToFHIR).Resource(nil, in)
		if errA != nil || !json.Valid(in) {
			return
		}
		if !json.Valid(a) {
			t.Fatalf("invalid JSON out of valid input %s: %s", in, a)
		}
	})
}

func BenchmarkToAidbox(b *testing.B) {
	benchmarkConvert(b, ToAidbox)
}

func BenchmarkToFHIR(b *testing.B) {
	benchmarkConvert(b, ToFHIR)
}

func benchmarkConvert(b *testing.B, dir Direction) {
	data, err := os.ReadFile("../../testdata/sample/Observation.ndjson")
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	toA := New(ToAidbox)
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		l = compact(b, string(l))
		if dir == ToFHIR {
			l, _ = toA.Resource(nil, l)
		}
		lines = append(lines, l)
	}
	c := New(dir)
	var out []byte
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for _, l := range lines {
			out, _ = c.Resource(out[:0], l)
		}
	}
}
