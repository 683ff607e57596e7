package serve

import (
	"encoding/json"
	"net/http"
)

// writeOutcome answers status with an OperationOutcome of one issue:
// code is the FHIR issue type (invalid, not-found, login, forbidden,
// throttled, transient, too-costly, exception, ...), text what went wrong,
// in one line.
func writeOutcome(w http.ResponseWriter, status int, code, text string) {
	writeOutcomeSeverity(w, status, "error", code, text)
}

// writeOutcomeSeverity is writeOutcome with another severity (fatal,
// error, warning, information).
func writeOutcomeSeverity(w http.ResponseWriter, status int, severity, code, text string) {
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/fhir+json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(outcomeLine(severity, code, text))
}

// outcomeLine is an OperationOutcome of one issue, as one line of JSON
// with its newline.
func outcomeLine(severity, code, text string) []byte {
	type issue struct {
		Severity    string `json:"severity"`
		Code        string `json:"code"`
		Diagnostics string `json:"diagnostics"`
	}
	body, _ := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []issue `json:"issue"`
	}{"OperationOutcome", []issue{{Severity: severity, Code: code, Diagnostics: text}}}) // strings
	return append(body, '\n')
}
