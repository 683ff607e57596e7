package compartment

import (
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	for typ, want := range map[string]string{
		"Observation":        "subject performer",
		"Encounter":          "subject",
		"Appointment":        "participant.actor",
		"AllergyIntolerance": "patient recorder asserter",
		"Coverage":           "policyHolder subscriber beneficiary payor",
		"Group":              "member.entity",
		"Patient":            "link.other",
	} {
		var got []string
		for _, p := range Paths(typ) {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s: %q, want %q", typ, got, want)
		}
	}
	if p := Paths("Observation"); !p[0].Single || p[1].Single {
		t.Errorf("Observation.subject is single, performer many: %+v", p)
	}
	for _, typ := range []string{"Organization", "Practitioner", "Medication", "Location", "ValueSet"} {
		if In(typ) {
			t.Errorf("%s is not in the Patient compartment", typ)
		}
	}
	if !In("Patient") || len(Types()) < 60 {
		t.Errorf("types: %d", len(Types()))
	}
}

func TestFilter(t *testing.T) {
	f, ok, err := Selection{IDs: []string{"p1", "p-2.x"}}.Filter("Observation")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	for _, want := range []string{
		`resource #>> '{subject,id}' = ANY(ARRAY['p1','p-2.x']::text[]) AND resource #>> '{subject,resourceType}' = 'Patient'`,
		`resource #>> '{subject,reference}' = ANY(ARRAY['Patient/p1','Patient/p-2.x']::text[])`,
		`jsonb_path_exists(resource, 'lax $.performer ? ((@.resourceType == "Patient" && @.id == $ids[*]) || @.reference == $refs[*])', '{"ids": ["p1","p-2.x"], "refs": ["Patient/p1","Patient/p-2.x"]}')`,
	} {
		if !strings.Contains(f, want) {
			t.Errorf("no %s in %s", want, f)
		}
	}
	if f, ok, _ := (Selection{All: true}).Filter("Patient"); !ok || f != "true" {
		t.Errorf("every Patient: %q", f)
	}
	if f, _, _ := (Selection{IDs: []string{"a"}}).Filter("Patient"); !strings.HasPrefix(f, "(id = ANY(ARRAY['a']::text[]) OR jsonb_path_exists(resource, 'lax $.link.other") {
		t.Errorf("Patient: %s", f)
	}
	if _, ok, _ := (Selection{All: true}).Filter("Organization"); ok {
		t.Error("Organization is not in it")
	}
	if _, ok, _ := (Selection{}).Filter("Observation"); ok {
		t.Error("nobody selected: nothing")
	}
	for _, bad := range []string{"a'b", `a"b`, "a b", "", strings.Repeat("x", 65), "a\\b", "Patient/1"} {
		if _, _, err := (Selection{IDs: []string{bad}}).Filter("Observation"); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}
