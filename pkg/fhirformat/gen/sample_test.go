package main

import (
	"bytes"
	"compress/gzip"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"
)

// sampleDefinitions is testdata/structuredefinitions.ndjson gzipped, as
// Generate reads it: 47 of the R4 StructureDefinitions (every complex
// type, Resource, DomainResource, Patient, Observation, Bundle and
// Parameters), each cut down to the fields the generator reads.
func sampleDefinitions(t *testing.T, skip string) *bytes.Buffer {
	t.Helper()
	data, err := os.ReadFile("testdata/structuredefinitions.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	for line := range strings.Lines(string(data)) {
		if skip != "" && strings.Contains(line, `"type":"`+skip+`","kind"`) {
			continue
		}
		zw.Write([]byte(line)) // a bytes.Buffer
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

// tableLines is the text of r4Table in a generated file, line by line.
func tableLines(t *testing.T, src []byte) []string {
	t.Helper()
	s := string(src)
	start, end := strings.Index(s, "`"), strings.LastIndex(s, "`")
	if start < 0 || end <= start {
		t.Fatalf("no r4Table literal in:\n%.300s", s)
	}
	return strings.Split(strings.TrimSuffix(s[start+1:end], "\n"), "\n")
}

// What the generator makes of the sample is Go, and every line of it is
// a line of the committed table (which TestTableIsGenerated checks whole where ../shared is).
func TestGenerateSample(t *testing.T) {
	src, err := Generate(sampleDefinitions(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "table.go", src, 0); err != nil {
		t.Fatalf("not Go: %v", err)
	}
	lines := tableLines(t, src)
	// The table may list the concrete resource types ("@ NAME" lines; or
	// they are generated elsewhere): when it does, the sample's, sorted.
	var resources []string
	for _, l := range lines {
		if name, ok := strings.CutPrefix(l, "@\t"); ok {
			resources = append(resources, name)
		}
	}
	if want := []string{"Bundle", "Observation", "Parameters", "Patient"}; resources != nil && !slices.Equal(resources, want) {
		t.Errorf("resources %v, want %v", resources, want)
	}
	for _, want := range []string{
		"Observation\tvalueQuantity\tx\tvalue Quantity", // a choice element
		"Observation\tsubject\tr\t",                     // a Reference
		"Observation\tcomponent\tc\tObservation.component",
		"Bundle.entry\tresource\tR\t",                         // a resource inside
		"Parameters.parameter\tpart\tc\tParameters.parameter", // a contentReference
		"Patient\tcontact\tc\tPatient.contact",                // a backbone element
		"Quantity\textension\tc\tExtension",                   // a complex type
		"Extension\tvalueReference\tx\tvalue Reference",       // Extension's value[x]
		"Patient.contact\tname\tc\tHumanName",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("no line %q", want)
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "Patient\tmeta\t") || strings.HasPrefix(l, "Observation\tmeta\t") {
			t.Errorf("a line for meta, which is the database layer's: %q", l)
		}
	}
	committed, err := os.ReadFile("../table.go")
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, l := range tableLines(t, committed) {
		all[l] = true
	}
	for _, l := range lines {
		if !all[l] {
			t.Errorf("generated from the sample but not in table.go: %q", l)
		}
	}
}

// A definition that an element points to and that is missing is an error
// naming it, not a table with a hole.
func TestGenerateMissingType(t *testing.T) {
	_, err := Generate(sampleDefinitions(t, "Quantity"))
	if err == nil || !strings.Contains(err.Error(), "no definition of Quantity") {
		t.Fatalf("Generate without Quantity: %v, want an error naming it", err)
	}
}
