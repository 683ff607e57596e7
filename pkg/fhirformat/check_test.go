package fhirformat

import (
	"bytes"
	"os"
	"testing"
)

// formatOracle checks the Checker against the converters: a resource is in
// the other format exactly when the converter from that format rewrites it,
// and never when it is in the format wanted; and it is known to be in the
// format wanted (Right) exactly when the converter from that format
// rewrites it.
type formatOracle struct {
	wantAidbox, wantFHIR *Checker
	toA, toF             *Converter
	buf                  []byte
	caught, neutral      int // lines caught in the wrong format; lines the same in both
}

func newFormatOracle() *formatOracle {
	return &formatOracle{wantAidbox: NewChecker(Aidbox), wantFHIR: NewChecker(FHIR), toA: New(ToAidbox), toF: New(ToFHIR)}
}

// check judges fhir (a resource in FHIR format) and aidbox (the same in
// Aidbox format) both ways.
func (o *formatOracle) check(t *testing.T, what string, fhir, aidbox []byte) {
	t.Helper()
	misfit := func(c *Checker, res []byte) string {
		t.Helper()
		p, err := c.Misfit(res, "")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return p
	}
	var rewritten bool
	for _, c := range []struct {
		res         []byte
		own, other  *Checker   // the checkers wanting its format, and the other
		from        *Converter // the converter from its format
		name, oname string
	}{
		{fhir, o.wantFHIR, o.wantAidbox, o.toA, "FHIR", "Aidbox"},
		{aidbox, o.wantAidbox, o.wantFHIR, o.toF, "Aidbox", "FHIR"},
	} {
		var err error
		if o.buf, err = c.from.Resource(o.buf[:0], c.res); err != nil {
			t.Fatal(err)
		}
		rewritten = !bytes.Equal(o.buf, c.res)
		if p := misfit(c.own, c.res); p != "" {
			t.Errorf("%s: %s format taken for %s format (%s)\n%.600s", what, c.name, c.oname, p, c.res)
		} else if c.own.Right() != rewritten {
			t.Errorf("%s: %s format known as such: %v, but to %s rewrites it: %v\n%.600s", what, c.name, c.own.Right(), c.oname, rewritten, c.res)
		}
		if p := misfit(c.other, c.res); (p != "") != rewritten {
			t.Errorf("%s: %s format judged %q as %s format, but to %s rewrites it: %v\n%.600s", what, c.name, p, c.oname, c.oname, rewritten, c.res)
		}
	}
	if rewritten {
		o.caught++
	} else {
		o.neutral++
	}
}

func TestMisfitRules(t *testing.T) {
	o := newFormatOracle()
	for _, r := range rules {
		o.check(t, r.name, compact(t, r.fhir), compact(t, r.aidbox))
	}
	if o.caught != len(rules)-2 {
		t.Errorf("%d rules caught in the wrong format, want all but the 2 that pass through", o.caught)
	}
}

func TestMisfitPaths(t *testing.T) {
	for _, c := range []struct {
		want     Format
		typ, res string
		path     string
	}{
		{Aidbox, "", `{"resourceType":"Observation","id":"1","valueQuantity":{"value":1}}`, "Observation.valueQuantity"},
		{Aidbox, "", `{"resourceType":"Observation","id":"1","status":"final","subject":{"reference":"Patient/1"}}`, "Observation.subject"},
		{Aidbox, "", `{"resourceType":"Observation","component":[{"code":{}},{"valueString":"x"}]}`, "Observation.component.valueString"},
		{Aidbox, "", `{"resourceType":"Observation","_effectiveDateTime":{"extension":[]}}`, "Observation._effectiveDateTime"},
		{Aidbox, "", `{"resourceType":"Observation","performer":[{"identifier":{"assigner":{"reference":"Organization/o"}}}]}`, "Observation.performer.identifier.assigner"},
		{Aidbox, "", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","deceasedBoolean":true}}]}`, "Patient.deceasedBoolean"},
		{Aidbox, "Observation", `{"id":"1","effectiveDateTime":"2020"}`, "Observation.effectiveDateTime"},
		{FHIR, "", `{"resourceType":"Observation","id":"1","value":{"Quantity":{"value":1}}}`, "Observation.value.Quantity"},
		{FHIR, "", `{"resourceType":"Observation","subject":{"resourceType":"Patient","id":"1"}}`, "Observation.subject"},
		{FHIR, "", `{"resourceType":"Observation","subject":{"localRef":"p"}}`, "Observation.subject"},
		{FHIR, "", `{"resourceType":"Observation","subject":{"uri":"urn:uuid:1"}}`, "Observation.subject"},
		{FHIR, "", `{"resourceType":"Patient","extension":[{"url":"u","value":{"_string":{},"string":"x"}}]}`, "Patient.extension.value._string"},
		// Nothing of the other format.
		{Aidbox, "", `{"resourceType":"Observation","value":{"Quantity":{"value":1}},"subject":{"resourceType":"Patient","id":"1"}}`, ""},
		{FHIR, "", `{"resourceType":"Observation","valueQuantity":{"value":1},"subject":{"reference":"Patient/1"}}`, ""},
		{FHIR, "", `{"resourceType":"Observation","value":{"Foo":1}}`, ""},                   // not a type code of value[x]
		{FHIR, "", `{"resourceType":"Observation","subject":{"uri":"Patient/1"}}`, ""},       // would read back split: left alone
		{Aidbox, "", `{"resourceType":"NotAType","valueQuantity":{}}`, ""},                   // types the table does not know are not judged
		{Aidbox, "", `{"resourceType":"Observation","custom":{"valueString":"x"}}`, ""},      // nor unknown elements
		{Aidbox, "", `{"resourceType":"Observation","subject":{"reference":1}}`, ""},         // not a string
		{Aidbox, "", `{"resourceType":"Observation","subject":[1,"x",{"display":"d"}]}`, ""}, // odd shapes are not judged
	} {
		got, err := NewChecker(c.want).Misfit(compact(t, c.res), c.typ)
		if err != nil || got != c.path {
			t.Errorf("want %s, %s: got %q, %v; want %q", c.want, c.res, got, err, c.path)
		}
	}
}

func TestMisfitBadJSON(t *testing.T) {
	for _, res := range []string{`{"resourceType":"Observation","subject":{"reference":`, `[`, ``} {
		if p, err := NewChecker(Aidbox).Misfit([]byte(res), ""); p != "" {
			t.Errorf("%q: %q, %v", res, p, err)
		}
	}
}

// BenchmarkMisfit1000 is the format check of a load: the first 1,000
// lines of a source (the sample's Observations, over and over), in FHIR
// format for --fhir and in Aidbox format for a plain load.
func BenchmarkMisfit1000(b *testing.B) {
	data, err := os.ReadFile("../../testdata/sample/Observation.ndjson")
	if err != nil {
		b.Fatal(err)
	}
	var fhir, aidbox [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		f := compact(b, string(l))
		fhir = append(fhir, f)
		aidbox = append(aidbox, convert(b, ToAidbox, f))
	}
	for _, c := range []struct {
		want  Format
		lines [][]byte
	}{{FHIR, fhir}, {Aidbox, aidbox}} {
		b.Run(c.want.String(), func(b *testing.B) {
			ch := NewChecker(c.want)
			for b.Loop() {
				for i := range 1000 {
					if p, err := ch.Misfit(c.lines[i%len(c.lines)], ""); p != "" || err != nil {
						b.Fatal(p, err)
					}
				}
			}
		})
	}
}
