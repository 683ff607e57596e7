package fhirformat

//go:generate go run ./gen -in ../../../shared/data/fhir-r4-definitions/structuredefinitions.ndjson.gz -out table.go
