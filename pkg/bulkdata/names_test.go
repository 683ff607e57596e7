package bulkdata

import "testing"

// Every name fhirbulk export writes is read back as what it was written
// for.
func TestNameRoundTrip(t *testing.T) {
	var names []Name
	for _, gz := range []bool{false, true} {
		names = append(names,
			Name{Type: "Patient", Gzip: gz},
			Name{Type: "Patient", Split: true, Gzip: gz},
			Name{Type: "Observation", Split: true, Part: 7, Gzip: gz},
			Name{Type: "Observation", Split: true, Part: 1234, Gzip: gz},
			Name{Kind: Deleted, Type: "Patient", Gzip: gz},
			Name{Kind: Errors, Gzip: gz},
		)
	}
	for _, n := range names {
		s := n.String()
		got, ok := ParseName(s)
		if !ok || got != n {
			t.Errorf("%+v: written %q, read back %+v, %v", n, s, got, ok)
		}
	}
}

// The names of real exports: fhirbulk's, servers' that split, the SMART
// bulk-data-client's; and names that are no export file.
func TestParseName(t *testing.T) {
	for _, c := range []struct {
		name string
		want Name
		ok   bool
	}{
		{"Patient.ndjson", Name{Type: "Patient"}, true},
		{"Patient.ndjson.gz", Name{Type: "Patient", Gzip: true}, true},
		{"Patient.000.ndjson", Name{Type: "Patient", Split: true}, true},
		{"Observation.012.ndjson.gz", Name{Type: "Observation", Split: true, Part: 12, Gzip: true}, true}, // fhirbulk --split-size, sample-bulk-fhir-datasets
		{"Patient_1.ndjson", Name{Type: "Patient", Split: true, Part: 1}, true},
		{"Patient-2.ndjson", Name{Type: "Patient", Split: true, Part: 2}, true},
		{"1.Patient.ndjson", Name{Type: "Patient", Split: true, Part: 1}, true}, // SMART bulk-data-client
		{"12.MedicationRequest.ndjson.gz", Name{Type: "MedicationRequest", Split: true, Part: 12, Gzip: true}, true},
		{"deleted.Patient.ndjson", Name{Kind: Deleted, Type: "Patient"}, true},
		{"deleted.Patient.ndjson.gz", Name{Kind: Deleted, Type: "Patient", Gzip: true}, true},
		{"error.ndjson", Name{Kind: Errors}, true},
		{"error.ndjson.gz", Name{Kind: Errors, Gzip: true}, true},
		{"Patient.99999999999999999999999.ndjson", Name{Type: "Patient", Split: true, Part: -1}, true},
		{"Foo.ndjson", Name{Type: "Foo"}, true}, // spelled as a type: which types exist is not told here

		{"log.ndjson", Name{}, false}, // the bulk-data-client's log
		{"patient.ndjson", Name{}, false},
		{"Patient.json", Name{}, false},
		{"Patient.ndjson.zip", Name{}, false},
		{"Patient.ndjson.gz.tmp", Name{}, false},
		{"data.ndjson.gz", Name{}, false},
		{"patients-export.ndjson", Name{}, false},
		{"deleted.patient.ndjson", Name{}, false},
		{"Patient.a.ndjson", Name{}, false},
		{".ndjson", Name{}, false},
		{"dir/Patient.ndjson", Name{}, false},
	} {
		got, ok := ParseName(c.name)
		if ok != c.ok || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestNameResourceType(t *testing.T) {
	for n, want := range map[Name]string{
		{Type: "Patient"}:                "Patient",
		{Kind: Deleted, Type: "Patient"}: "Bundle",
		{Kind: Errors}:                   "OperationOutcome",
	} {
		if got := n.ResourceType(); got != want {
			t.Errorf("%+v: %q, want %q", n, got, want)
		}
	}
}
