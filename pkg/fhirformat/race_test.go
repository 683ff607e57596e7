//go:build race

package fhirformat

// raceEnabled: built with -race.
const raceEnabled = true
