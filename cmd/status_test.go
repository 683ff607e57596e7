package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
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

// The table of imports names each database; host:port only when the
// imports went to several servers, so that the usual table (one server,
// an export's id) fits 80 columns.
func TestImportTableDatabases(t *testing.T) {
	start := time.Date(2026, 12, 3, 8, 23, 18, 0, time.Local)
	state := func(id, name, host string) *bulkimport.State {
		return &bulkimport.State{ID: id, Status: bulkimport.StatusFinished, Time: bulkimport.StateTime{Start: start},
			Database: &pg.Identity{Database: name, Host: host, Port: 5432}}
	}
	table := func(list ...*bulkimport.State) string {
		var b strings.Builder
		if err := writeImportTable(&b, list); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	one := table(state("full-3b1c2d4e", "staging", "db1"), state("full-9a8b7c6d", "production", "db1"))
	want := "ID             STATUS    STARTED              INPUTS  RESOURCES  DATABASE\n" +
		"full-3b1c2d4e  finished  2026-12-03 08:23:18  0/0     0          staging\n" +
		"full-9a8b7c6d  finished  2026-12-03 08:23:18  0/0     0          production\n"
	if one != want {
		t.Errorf("one server:\n%s\nwant:\n%s", one, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(one), "\n") {
		if len(line) > 80 {
			t.Errorf("wider than 80 columns: %q", line)
		}
	}
	two := table(state("full-3b1c2d4e", "fhir", "db1"), state("full-9a8b7c6d", "fhir", "db2"), &bulkimport.State{ID: "old", Status: bulkimport.StatusFinished})
	for _, want := range []string{"  fhir@db1:5432\n", "  fhir@db2:5432\n", "  -\n"} {
		if !strings.Contains(two, want) {
			t.Errorf("two servers: no %q in\n%s", want, two)
		}
	}
}
