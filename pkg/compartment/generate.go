package compartment

//go:generate go run ./gen -defs ../../../shared/data/fhir-r4-definitions -out table.go
