package cmd

import (
	"errors"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/dumpsql"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// flagHint is what to add to err's line for a person at the command line:
// the flag, variable or file that sets what went wrong, or the one that
// would let it through. Packages return errors that carry facts and name
// no flag; the words about flags are here, in one place.
func flagHint(err error) string {
	var cfg *pg.ConfigError
	var conn *pg.ConnectError
	var failed *bulkimport.FailedError
	var dup *dumpsql.DuplicateColumnError
	switch {
	case errors.As(err, &cfg) && cfg.Err != nil:
		return " (--db, DATABASE_URL or PG* variables)"
	case errors.As(err, &cfg):
		return " (--db, DATABASE_URL)"
	case errors.As(err, &conn) && conn.Unconfigured:
		return " (nothing was configured: give --db postgres://HOST:PORT/DATABASE or set DATABASE_URL)"
	case errors.As(err, &failed):
		return " (fhirbulk status " + failed.ID + ")"
	case errors.As(err, &dup):
		return " for --format " + dup.Format
	}
	return ""
}

// message is err as the one line a person is shown, with its hint.
func message(err error) string {
	return errorLine(err) + flagHint(err)
}
