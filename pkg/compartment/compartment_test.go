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
		`(CASE WHEN (resource #>> '{subject,resourceType}') = 'Patient' THEN (resource #>> '{subject,id}') ELSE substring(coalesce((resource #>> '{subject,reference}'), (resource #>> '{subject,uri}')) FROM '^Patient/([A-Za-z0-9.-]{1,64})(/_history/[^/]*)?$') END) = ANY(ARRAY['p1','p-2.x']::text[])`,
		`(jsonb_path_query_array(resource, 'lax $.performer ? (@.resourceType == "Patient").id') || jsonb_path_query_array(resource, 'lax $.performer.reference') || jsonb_path_query_array(resource, 'lax $.performer.uri')) ?| ARRAY['p1','p-2.x','Patient/p1','Patient/p-2.x']::text[]`,
	} {
		if !strings.Contains(f, want) {
			t.Errorf("no\n%s\nin\n%s", want, f)
		}
	}
	if f, ok, _ := (Selection{All: true}).Filter("Patient"); !ok || f != "true" {
		t.Errorf("every Patient: %q", f)
	}
	if f, _, _ := (Selection{IDs: []string{"a"}}).Filter("Patient"); !strings.HasPrefix(f, "(id = ANY(ARRAY['a']::text[]) OR (jsonb_path_query_array(resource, 'lax $.link.other") {
		t.Errorf("Patient: %s", f)
	}
	if _, ok, _ := (Selection{All: true}).Filter("Organization"); ok {
		t.Error("Organization is not in it")
	}
	if _, ok, _ := (Selection{}).Filter("Observation"); ok {
		t.Error("nobody selected: nothing")
	}
	for _, bad := range []string{"a'b", `a"b`, "a b", "", strings.Repeat("x", 65), "a\\b", "Patient/1", "a|b", "a)"} {
		if _, _, err := (Selection{IDs: []string{bad}}).Filter("Observation"); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}

func TestRefPatient(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/p1":               "p1",
		"Patient/p-1.2/_history/3": "p-1.2",
		"Patient/p1/_history/":     "p1",
		"Practitioner/p1":          "",
		"http://x/Patient/p1":      "",
		"Patient/":                 "",
		"Patient/a/b":              "",
		"urn:uuid:123":             "",
	} {
		got, ok := RefPatient(ref)
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", ref, got, ok, want)
		}
	}
}
