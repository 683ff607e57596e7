package r4types

import (
	"slices"
	"testing"
)

func TestNames(t *testing.T) {
	n := Names()
	if len(n) != 146 || !slices.IsSorted(n) {
		t.Errorf("%d names, sorted %v; want 146, sorted", len(n), slices.IsSorted(n))
	}
	n[0] = "changed"
	if Names()[0] != "Account" {
		t.Error("Names shares its array with the caller")
	}
	for in, want := range map[string]string{"Patient": "Patient", "PATIENT": "Patient", "observation": "Observation"} {
		if got, ok := Spelling(in); !ok || got != want {
			t.Errorf("Spelling(%q) = %q, %v", in, got, ok)
		}
	}
	for _, no := range []string{"Resource", "DomainResource", "Quantity", "Foo", ""} {
		if _, ok := Spelling(no); ok {
			t.Errorf("Spelling(%q): found", no)
		}
	}
	if !Is("Patient") || Is("patient") {
		t.Error("Is")
	}
}
