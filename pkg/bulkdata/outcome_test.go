package bulkdata

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The lines of an errors file, byte for byte: readers (status, people with
// jq, other tools) depend on them.
func TestOutcomeLines(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{string(AppendOutcome(nil, "Observation.ndjson.gz", 812, "o1", `no string "id"`)),
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Observation.ndjson.gz line 812: no string \"id\"","expression":["line 812"]}],"extension":[{"url":"` + OutcomeSource + `","valueString":"Observation.ndjson.gz"},{"url":"` + OutcomeLine + `","valueInteger":812},{"url":"` + OutcomeID + `","valueString":"o1"}]}` + "\n"},
		{string(AppendOutcome(nil, "-", 1<<31, "", "bad")),
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"- line 2147483648: bad","expression":["line 2147483648"]}],"extension":[{"url":"` + OutcomeSource + `","valueString":"-"},{"url":"` + OutcomeLine + `","valueString":"2147483648"}]}` + "\n"},
		{string(AppendIssue(nil, `patient row "p1": bad JSON: not exported`, "Patient")),
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"patient row \"p1\": bad JSON: not exported","expression":["Patient"]}]}` + "\n"},
		{string(AppendIssue(nil, "x")),
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"x"}]}` + "\n"},
	} {
		if c.got != c.want {
			t.Errorf("got\n%s\nwant\n%s", c.got, c.want)
		}
	}
}

// What ErrorsWriter writes reads back as the bad lines given it, one
// OperationOutcome per line, whatever their text holds.
func TestErrorsWriterRoundTrip(t *testing.T) {
	type bad struct {
		source string
		line   int64
		id     string
		reason string
	}
	in := []bad{
		{"a.ndjson", 1, "p1", `no string "id"`},
		{"https://h/x.ndjson?REDACTED", 2, "", "line\nbreak and \x00 and ü"},
		{"b.ndjson", 3, `q"\`, "</script>"},
	}
	var buf bytes.Buffer
	w := NewErrorsWriter(&buf)
	for _, b := range in {
		if err := w.BadLine(b.source, b.line, b.id, b.reason); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	if len(lines) != len(in)+1 || lines[len(in)] != "" {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	for i, b := range in {
		var o struct {
			ResourceType string
			Issue        []struct{ Severity, Code, Diagnostics string }
			Extension    []struct {
				URL          string
				ValueString  string
				ValueInteger *int64
			}
		}
		if err := json.Unmarshal([]byte(lines[i]), &o); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		got := bad{}
		for _, e := range o.Extension {
			switch e.URL {
			case OutcomeSource:
				got.source = e.ValueString
			case OutcomeLine:
				got.line = *e.ValueInteger
			case OutcomeID:
				got.id = e.ValueString
			}
		}
		got.reason = strings.TrimPrefix(o.Issue[0].Diagnostics, got.source+" line "+string(rune('0'+got.line))+": ")
		if o.ResourceType != "OperationOutcome" || len(o.Issue) != 1 || o.Issue[0].Severity != "error" || o.Issue[0].Code != "invalid" || got != b {
			t.Errorf("line %d: %+v, read back %+v; want %+v", i+1, o, got, b)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestErrorsWriterError(t *testing.T) {
	if err := NewErrorsWriter(failWriter{}).BadLine("a", 1, "", "x"); err == nil || err.Error() != "disk full" {
		t.Errorf("%v", err)
	}
}
