// Package compartment is the FHIR R4 Patient compartment, as the HL7 Bulk
// Data Patient- and Group-level exports select by it: for each resource
// type in it, the reference elements that link a resource to its patient
// (generated from R4's CompartmentDefinition and SearchParameters: see
// gen), and the SQL that keeps the rows of a type in the compartment of
// some patients, or of any patient, over the Aidbox storage layout.
//
// A reference counts in both the ways a stored resource holds one:
// Aidbox's {"resourceType": "Patient", "id": "p1"} and FHIR's
// {"reference": "Patient/p1"}.
package compartment

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Path is a reference element of a type in the compartment: its element
// names below the resource (participant, actor), and whether each step
// holds one value (Single) or the path may meet arrays.
type Path struct {
	Elements []string
	Single   bool
}

func (p Path) String() string { return strings.Join(p.Elements, ".") }

var table = sync.OnceValue(func() map[string][]Path {
	t := map[string][]Path{}
	for _, line := range strings.Split(strings.TrimSpace(patientTable), "\n") {
		f := strings.Split(line, "\t")
		t[f[0]] = append(t[f[0]], Path{Elements: strings.Split(f[1], "."), Single: f[2] == "1"})
	}
	return t
})

// Paths are the reference elements that put a resource of type t in a
// patient's compartment; nil when t is not in the compartment (Patient
// itself is, by its id: see In).
func Paths(t string) []Path { return table()[t] }

// In reports whether resources of type t can be in a patient's
// compartment: Patient, and every type R4 lists with a parameter.
func In(t string) bool { return t == "Patient" || len(table()[t]) > 0 }

// Types are the types of the compartment, sorted.
func Types() []string {
	var out []string
	for t := range table() {
		out = append(out, t)
	}
	if !slices.Contains(out, "Patient") {
		out = append(out, "Patient")
	}
	sort.Strings(out)
	return out
}

// ID is what a patient id may be: FHIR's id. Only such ids get into SQL.
var ID = regexp.MustCompile(`^[A-Za-z0-9.-]{1,64}$`)

// Selection is whose compartments an export keeps: every patient's (All:
// every Patient, and every resource that refers to a Patient), or those
// of the patients IDs.
type Selection struct {
	All bool
	IDs []string
}

// Filter is the SQL condition (on the columns id and resource of a table
// in the Aidbox layout) that keeps the rows of type t in the selection's
// compartments, and false when no row of t can be (t is not in the
// compartment, or no patient is selected). The ids are checked against ID
// and written as literals (COPY takes no parameters): nothing else of a
// caller's gets in.
//
// A single-valued path is tested as PatientOf(path) = ANY(ids), a path
// that may meet arrays as PatientsOf(path) ?| ids: the indexes IndexSQL
// makes serve them (all of a type's, or the planner scans the table).
func (s Selection) Filter(t string) (string, bool, error) {
	if !In(t) {
		return "", false, nil
	}
	for _, id := range s.IDs {
		if !ID.MatchString(id) {
			return "", false, fmt.Errorf("patient id %q: not a FHIR id", id)
		}
	}
	if !s.All && len(s.IDs) == 0 {
		return "", false, nil
	}
	var conds []string
	if t == "Patient" {
		if s.All {
			return "true", true, nil
		}
		conds = append(conds, "id = ANY("+textArray(s.IDs)+")")
	}
	for _, p := range Paths(t) {
		conds = append(conds, s.pathCondition(p))
	}
	return "(" + strings.Join(conds, " OR ") + ")", true, nil
}

// refPattern matches a reference string to a Patient (the id its first
// group), plain or versioned: Patient/p1, Patient/p1/_history/2.
const refPattern = `^Patient/([A-Za-z0-9.-]{1,64})(/_history/[^/]*)?$`

// PatientOf is the SQL expression of the id of the Patient the reference
// at the single-valued path p refers to, in any of the forms a stored
// resource holds one (Aidbox's {"resourceType": "Patient", "id": ID};
// {"reference": "Patient/ID"}, versioned or not; {"uri": "Patient/ID"},
// as fhirbulk load stores a reference it does not read), else NULL. It is
// immutable: an expression index on it serves Filter.
func PatientOf(p Path) string {
	at := func(last string) string {
		return "(resource #>> '{" + strings.Join(append(slices.Clone(p.Elements), last), ",") + "}')"
	}
	return "(CASE WHEN " + at("resourceType") + " = 'Patient' THEN " + at("id") +
		" ELSE substring(coalesce(" + at("reference") + ", " + at("uri") + ") FROM '" + refPattern + "') END)"
}

// PatientsOf is the SQL expression, for a path p that may meet arrays, of
// the jsonb array of what its references hold: the ids of those in
// Aidbox's form to a Patient, and the reference (or uri) strings of the
// others. Filter tests it with ?| against the ids and Patient/ID: a GIN
// index on it serves that. A versioned reference string
// (Patient/p1/_history/2) on such a path is not matched.
func PatientsOf(p Path) string {
	path := "lax $." + strings.Join(p.Elements, ".")
	return "(jsonb_path_query_array(resource, '" + path + ` ? (@.resourceType == "Patient").id')` +
		" || jsonb_path_query_array(resource, '" + path + ".reference')" +
		" || jsonb_path_query_array(resource, '" + path + ".uri'))"
}

// IndexSQL is the statement that makes the index serving path p in table
// (as quoted), named name: a btree on PatientOf for a single-valued path,
// a GIN on PatientsOf for another.
func IndexSQL(table, name string, p Path) string {
	if p.Single {
		return "CREATE INDEX CONCURRENTLY IF NOT EXISTS " + name + " ON " + table + " (" + PatientOf(p) + ")"
	}
	return "CREATE INDEX CONCURRENTLY IF NOT EXISTS " + name + " ON " + table + " USING gin (" + PatientsOf(p) + ")"
}

func (s Selection) pathCondition(p Path) string {
	if p.Single {
		if s.All {
			return PatientOf(p) + " IS NOT NULL"
		}
		return PatientOf(p) + " = ANY(" + textArray(s.IDs) + ")"
	}
	if s.All {
		path := "lax $." + strings.Join(p.Elements, ".")
		return "jsonb_path_exists(resource, '" + path + ` ? (@.resourceType == "Patient" || @.reference like_regex "` + refPattern + `" || @.uri like_regex "` + refPattern + `")')`
	}
	keys := slices.Clone(s.IDs)
	for _, id := range s.IDs {
		keys = append(keys, "Patient/"+id)
	}
	return PatientsOf(p) + " ?| " + textArray(keys)
}

// textArray is a text[] literal of checked ids (letters, digits, . and -:
// nothing to escape).
func textArray(ids []string) string {
	return "ARRAY['" + strings.Join(ids, "','") + "']::text[]"
}

// RefPatient is the id of the Patient a reference string names
// (Patient/ID, versioned or not), and whether it names one.
func RefPatient(ref string) (string, bool) {
	m := refRE.FindStringSubmatch(ref)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var refRE = regexp.MustCompile(refPattern)
