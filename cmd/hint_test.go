package cmd

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/dumpsql"
	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// The packages' errors name no flag; message adds the words, wrapped or not.
func TestMessageHints(t *testing.T) {
	_, scheme := pg.ParseDSN("mysql://h/d")
	_, parse := pg.ParseDSN("host=h port=eighty")
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("plain"), "plain"},
		{scheme, "bad connection string: a mysql:// URL; want postgres://HOST:PORT/DATABASE (--db, DATABASE_URL)"},
		{fmt.Errorf("x: %w", parse), "x: " + parse.Error() + " (--db, DATABASE_URL or PG* variables)"},
		{&pg.ConnectError{Where: "here", Reason: "connection refused", Unconfigured: true},
			"cannot connect to PostgreSQL here: connection refused (nothing was configured: give --db postgres://HOST:PORT/DATABASE or set DATABASE_URL)"},
		{&pg.ConnectError{Where: "here", Reason: "connection refused"}, "cannot connect to PostgreSQL here: connection refused"},
		{&bulkimport.FailedError{ID: "a", Failed: 1, Inputs: 2}, "import a failed: 1 of 2 inputs failed (fhirbulk status a)"},
		{&bulkimport.FinishedError{ID: "a"}, `import "a" finished already (use --force to load it all again)`},
		{&bulkimport.OtherInputsError{ID: "a"}, `import "a" recorded other inputs than this manifest lists: give the manifest another id, or use --force`},
		{fmt.Errorf("%w", bulkimport.ErrNoStateDir), "no state folder: set --state-dir, FHIRBULK_STATE_DIR or HOME"},
		{fmt.Errorf("convert big.ndjson: %w", &ndjson.LineError{Line: 1, Reason: "longer than 2 KiB", Err: &ndjson.TooLongError{Max: 2048}}),
			"convert big.ndjson: line 1: longer than 2 KiB (--max-line-size)"},
		{&dumpsql.DuplicateColumnError{Name: "id", Format: "ndjson"}, `column name "id" appears twice in the result: give the columns distinct names (... AS "id_2") for --format ndjson`},
	} {
		if got := message(c.err, true); got != c.want {
			t.Errorf("message(%v)\n got %s\nwant %s", c.err, got, c.want)
		}
	}
}

// A bad line's facts, worded with load's flags; errors that wrap one keep
// their own words.
func TestLineWords(t *testing.T) {
	for _, c := range []struct {
		fact error
		want string
	}{
		{&load.TooManyBadLinesError{Max: 3}, "more than --max-errors 3 bad lines"},
		{&load.NoTypeError{}, `no "resourceType" (give --type for single-type sources)`},
		{&load.OtherTypeError{Name: "Observation", Type: "Patient"}, `resourceType "Observation" is not --type Patient`},
		{&load.UnknownTypeError{Type: "Zebra"}, `resourceType "Zebra" is not an R4 type and has no table (--new-type makes its table)`},
		{&load.VersionError{Txid: 3, Stored: 5, What: "Patient/p", Older: true},
			"meta.versionId 3 is older than version 5 of Patient/p in the database: stored, it would make the history go backwards (drop --preserve-meta to store it as a new version)"},
		{&load.VersionError{Txid: 3, Stored: 5, What: "Patient/p", Deletion: true},
			"meta.versionId 3 is not newer than version 5 of Patient/p in the database: the deletion would make the history go backwards (drop --preserve-meta to delete it as a new version)"},
		{&store.TxidTooLargeError{Value: `"1e99"`},
			`meta.versionId "1e99" is above 9007199254740991, the largest txid --preserve-meta keeps (it would move the shared transaction_id_seq for good)`},
		{&ndjson.TooLongError{Max: 2048}, "longer than 2 KiB (--max-line-size)"},
		{fmt.Errorf("x: %w", &load.NoTypeError{}), ""},
		{errors.New("other"), ""},
	} {
		if got := lineWords(c.fact); got != c.want {
			t.Errorf("lineWords(%v) = %q, want %q", c.fact, got, c.want)
		}
	}
}
