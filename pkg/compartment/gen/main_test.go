package main

import (
	"bytes"
	"os"
	"testing"
)

// table.go is what gen makes of the R4 definitions (when they are here).
func TestTableUpToDate(t *testing.T) {
	const defs = "../../../../shared/data/fhir-r4-definitions"
	if _, err := os.Stat(defs); err != nil {
		t.Skip("needs ../shared/data/fhir-r4-definitions")
	}
	got, err := generate(defs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../table.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("pkg/compartment/table.go is not what gen makes: run go generate ./pkg/compartment")
	}
}

// An expression gen cannot read as a path is an error, not a silent gap.
func TestPathExpr(t *testing.T) {
	for expr, want := range map[string]string{
		"Observation.subject":                                  ".subject",
		"Observation.subject.where(resolve() is Patient)":      ".subject",
		"Appointment.participant.actor":                        ".participant.actor",
		"Person.link.target.where(resolve() is Patient)":       ".link.target",
		"(ActivityDefinition.useContext.value as Quantity)":    "",
		"Observation.subject.where(resolve() is Practitioner)": "",
	} {
		m := pathExpr.FindStringSubmatch(expr)
		got := ""
		if m != nil {
			got = m[2]
		}
		if got != want {
			t.Errorf("%s: %q, want %q", expr, got, want)
		}
	}
}
