package main

import (
	"bytes"
	"os"
	"testing"
)

// The committed table must be what the generator makes from the definitions.
func TestTableIsGenerated(t *testing.T) {
	f, err := os.Open("../../../../shared/data/fhir-r4-definitions/structuredefinitions.ndjson.gz")
	if err != nil {
		t.Skipf("the R4 definitions are not here (../shared/data): %v", err)
	}
	defer f.Close()
	want, err := Generate(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../table.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("pkg/fhirformat/table.go is not what the generator makes: run go generate ./pkg/fhirformat")
	}
}

// The committed r4types names must be what the generator makes too.
func TestNamesAreGenerated(t *testing.T) {
	f, err := os.Open("../../../../shared/data/fhir-r4-definitions/structuredefinitions.ndjson.gz")
	if err != nil {
		t.Skipf("the R4 definitions are not here (../shared/data): %v", err)
	}
	defer f.Close()
	want, err := GenerateNames(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../r4types/names.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("pkg/r4types/names.go is not what the generator makes: run go generate ./pkg/r4types")
	}
}
