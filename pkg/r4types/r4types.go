// Package r4types names the concrete resource types of FHIR R4 (4.0.1),
// generated from its StructureDefinitions (names.go; see
// pkg/fhirformat/gen). It imports nothing of fhirbulk's: the storage layer
// spells type names with it, and the converter knows resources by it,
// without either depending on the other.
package r4types

//go:generate go run ../fhirformat/gen -names -in ../../../shared/data/fhir-r4-definitions/structuredefinitions.ndjson.gz -out names.go

import (
	"strings"
	"sync"
)

// Names returns the names of the concrete R4 resource types, sorted (a new
// slice each call).
func Names() []string { return append([]string(nil), names[:]...) }

var byLower = sync.OnceValue(func() map[string]string {
	m := make(map[string]string, len(names))
	for _, name := range names {
		m[strings.ToLower(name)] = name
	}
	return m
})

// Spelling returns the concrete R4 resource type whose name equals name
// when case is ignored ("PATIENT" gives "Patient"), and false when name is
// not an R4 type in any spelling.
func Spelling(name string) (string, bool) {
	s, ok := byLower()[strings.ToLower(name)]
	return s, ok
}

// Is reports whether name is a concrete R4 resource type, spelled as R4
// spells it.
func Is(name string) bool {
	s, ok := Spelling(name)
	return ok && s == name
}

// Required are the top-level elements R4 requires of type name (min 1 or
// more; a choice as value[x]), in definition order; nil for none or an
// unknown type.
func Required(name string) []string { return required[name] }

// Choices are the top-level choice elements of type name, as their base
// names (value for value[x]); nil for none or an unknown type.
func Choices(name string) []string { return choices[name] }
