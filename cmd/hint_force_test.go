package cmd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/sink"
)

// flagHint adds the words about --force to sink's typed errors, wrapped or
// not, only for a command that has the flag.
func TestFlagHintForce(t *testing.T) {
	root := (&app{}).rootCmd()
	find := func(name string) *cobra.Command {
		c, _, err := root.Find([]string{name})
		if err != nil || c.Name() != name {
			t.Fatalf("no command %s: %v", name, err)
		}
		return c
	}
	exists := fmt.Errorf("dump: %w", &sink.ExistsError{Path: "p.ndjson"})
	notExport := fmt.Errorf("output home is %w", sink.ErrNotExport)
	for _, tc := range []struct {
		cmd  string
		err  error
		want string
	}{
		{"dump", exists, " (use --force to replace it)"},
		{"dump-sql", exists, " (use --force to replace it)"},
		{"convert", exists, " (use --force to replace it)"},
		{"export", exists, " (use --force to replace it)"},
		{"export", notExport, ": --force replaces only those"},
		{"load", exists, ""}, // load --errors: no --force to suggest
		{"dump", fmt.Errorf("something else"), ""},
	} {
		c := find(tc.cmd)
		if got := flagHint(tc.err, c.Flags().Lookup("force") != nil); got != tc.want {
			t.Errorf("%s, %v: hint %q, want %q", tc.cmd, tc.err, got, tc.want)
		}
	}
}

// The line a user sees for load --errors over an existing file names no
// flag load lacks.
func TestLoadErrorsExistsLine(t *testing.T) {
	dir := t.TempDir()
	errs := filepath.Join(dir, "errors.ndjson")
	src := filepath.Join(dir, "p.ndjson")
	os.WriteFile(errs, nil, 0o644)
	os.WriteFile(src, []byte(`{"resourceType":"Patient","id":"p1"}`+"\n"), 0o644)
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"load", "--check", "--max-errors", "1", "--errors", errs, src},
		nil, &stdout, &stderr, func(string) string { return "" })
	if want := "fhirbulk: --errors: output " + errs + " already exists\n"; code != exitFailure || stderr.String() != want {
		t.Errorf("exit %d, stderr %q, want %q", code, stderr.String(), want)
	}
}
