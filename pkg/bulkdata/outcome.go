package bulkdata

import (
	"encoding/json"
	"fmt"
	"io"
)

// An errors file (the manifest's "error", a load's --errors FILE, an
// import's errors in its state folder) holds one OperationOutcome per
// line, as the IG's error files do, each of one issue of severity error
// and code invalid:
//
//	{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Observation.ndjson.gz line 812: no string \"id\"","expression":["line 812"]}],"extension":[...]}

// Outcome extension URLs: what an errors file says of a bad line besides
// its text.
const (
	OutcomeSource = "https://fhirbulk.dev/StructureDefinition/error-source"
	OutcomeLine   = "https://fhirbulk.dev/StructureDefinition/error-line"
	OutcomeID     = "https://fhirbulk.dev/StructureDefinition/error-id"
)

type outcomeExt struct {
	URL          string `json:"url"`
	ValueString  string `json:"valueString,omitempty"`
	ValueInteger *int64 `json:"valueInteger,omitempty"`
}

// appendOutcome appends the line (with its newline) of an OperationOutcome
// whose one issue says diagnostics at expression, with extensions ext.
func appendOutcome(b []byte, diagnostics string, expression []string, ext []outcomeExt) []byte {
	type issue struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics"`
		Expression  []string `json:"expression,omitempty"`
	}
	o := struct {
		ResourceType string       `json:"resourceType"`
		Issue        []issue      `json:"issue"`
		Extension    []outcomeExt `json:"extension,omitempty"`
	}{
		ResourceType: "OperationOutcome",
		Issue:        []issue{{Severity: "error", Code: "invalid", Diagnostics: diagnostics, Expression: expression}},
		Extension:    ext,
	}
	j, _ := json.Marshal(o) // strings and numbers
	return append(append(b, j...), '\n')
}

// AppendOutcome appends the line an errors file holds for a bad line of
// source (shown redacted): its issue says "SOURCE line N: reason" at
// "line N", and its extensions give the source, the line number and the
// resource's id (when known).
func AppendOutcome(b []byte, source string, line int64, id, reason string) []byte {
	where := fmt.Sprintf("line %d", line)
	ext := []outcomeExt{{URL: OutcomeSource, ValueString: source}}
	if line <= 1<<31-1 { // FHIR's integer is 32 bits
		ext = append(ext, outcomeExt{URL: OutcomeLine, ValueInteger: &line})
	} else {
		ext = append(ext, outcomeExt{URL: OutcomeLine, ValueString: fmt.Sprint(line)})
	}
	if id != "" {
		ext = append(ext, outcomeExt{URL: OutcomeID, ValueString: id})
	}
	return appendOutcome(b, source+" "+where+": "+reason, []string{where}, ext)
}

// AppendIssue appends the line of an errors file for what is not a line
// of a source (a row an export could not write): its issue says
// diagnostics, at expression (none: no "expression").
func AppendIssue(b []byte, diagnostics string, expression ...string) []byte {
	return appendOutcome(b, diagnostics, expression, nil)
}

// ErrorsWriter writes the bad lines of a load or an import to an errors
// file, as AppendOutcome words them.
type ErrorsWriter struct {
	w   io.Writer
	buf []byte
}

// NewErrorsWriter writes an errors file to w. Closing w (committing the
// file) is the caller's.
func NewErrorsWriter(w io.Writer) *ErrorsWriter { return &ErrorsWriter{w: w} }

// BadLine writes the line for line of source (shown redacted), whose
// resource's id is id ("" when not known), bad for reason.
func (e *ErrorsWriter) BadLine(source string, line int64, id, reason string) error {
	e.buf = AppendOutcome(e.buf[:0], source, line, id, reason)
	_, err := e.w.Write(e.buf)
	return err
}
