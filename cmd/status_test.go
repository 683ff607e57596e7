package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"HTTP 404 Not Found":              "HTTP 404 Not Found",
		"Ünïcödé, 日本語, emoji 🙂, U+FFFD �": "Ünïcödé, 日本語, emoji 🙂, U+FFFD �",
		`C:\data\p.ndjson`:                `C:\data\p.ndjson`,
		"HTTP 500 \x1b[31mboom\x1b[0m":    `HTTP 500 \x1b[31mboom\x1b[0m`,
		"a\tb\nc\rd\x00e\x7f":             `a\x09b\x0ac\x0dd\x00e\x7f`,
		"C1 \u009b2J":                     `C1 \u009b2J`,
		"bidi \u202eevil\u202c":           `bidi \u202eevil\u202c`,
		"bad \xff\xfe utf-8":              `bad \xff\xfe utf-8`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// Text from outside (a server's reason phrase, a URL, an id from a state
// file) is shown with its control characters escaped.
func TestDescribeEscapes(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &bulkimport.State{
		ID: "esc\x1b]0;title\x07", Status: bulkimport.StatusFailed, Time: bulkimport.StateTime{Start: start, End: &start},
		Inputs: []bulkimport.InputState{
			{ResourceType: "Patient", URL: "https://h/p\x1b[2J.ndjson", Status: bulkimport.StatusFailed, Error: "HTTP 500 \x1b[31mboom\x1b[0m"},
			{ResourceType: "Condition", URL: "/data/ünï\tcödé.ndjson", Status: bulkimport.StatusFinished, Total: 3},
		},
	}
	var b strings.Builder
	if err := writeImportTable(&b, []*bulkimport.State{st}); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"describe": describe(st), "table": b.String()} {
		if strings.ContainsAny(out, "\x1b\x07\t") {
			t.Errorf("%s shows control characters:\n%q", name, out)
		}
		if !strings.Contains(out, `esc\x1b]0;title\x07`) {
			t.Errorf("%s lost the id:\n%s", name, out)
		}
	}
	out := describe(st)
	for _, want := range []string{`HTTP 500 \x1b[31mboom\x1b[0m`, `https://h/p\x1b[2J.ndjson`, `/data/ünï\x09cödé.ndjson`} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %s:\n%s", want, out)
		}
	}
}
