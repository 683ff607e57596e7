package store

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateType(t *testing.T) {
	for _, ok := range []string{"Patient", "A", "MedicationKnowledge", "MyCustomThing", "X" + strings.Repeat("a", MaxTypeLen-1)} {
		if err := ValidateType(ok); err != nil {
			t.Errorf("ValidateType(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "patient", "Pa tient", "Pa_tient", "Patient;", "Pätient", "1Patient", "X" + strings.Repeat("a", MaxTypeLen), "Patient\n", "PATIENT", "ObservatioN"} {
		err := ValidateType(bad)
		var te *TypeNameError
		if !errors.As(err, &te) || te.Type != bad || te.Problem == "" {
			t.Errorf("ValidateType(%q) = %v, want a *TypeNameError", bad, err)
		}
	}
	if got := Table("Procedure"); got != `"procedure"` {
		t.Errorf("Table(Procedure) = %s", got)
	}
	if got := HistoryTable("Procedure"); got != `"procedure_history"` {
		t.Errorf("HistoryTable(Procedure) = %s", got)
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"patient": "Patient", "PATIENT": "Patient", "Patinet": "Patient", "Obsevation": "Observation",
		"Observaton": "Observation", "Patient": "", "Zebra": "", "Foo": "", "X": "",
	} {
		if got := Suggest(in); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
