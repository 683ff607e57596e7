package cmd

import (
	"errors"
	"fmt"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/dumpsql"
	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/load"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// Packages return errors that carry facts and name no flag; the words about
// flags, variables and commands are here, in one place: flagHint ends the
// line of an error, the format hints are handed to the packages that make
// *fhirformat.FormatError (their message goes on after the hint).

// flagHint is what to add at the end of err's line for a person at the
// command line: the flag, variable or command that sets what went wrong,
// or that would let it through ("" when there is nothing to add).
//
// The --force words go only to a command that has --force (load --errors
// has none): force says whether it has.
func flagHint(err error, force bool) string {
	var cfg *pg.ConfigError
	var conn *pg.ConnectError
	var failed *bulkimport.FailedError
	var otherDB *bulkimport.OtherDatabaseError
	var finished *bulkimport.FinishedError
	var otherInputs *bulkimport.OtherInputsError
	var dup *dumpsql.DuplicateColumnError
	var order *bulkimport.OrderError
	var manifest *bulkimport.ManifestError
	var tooLong *ndjson.TooLongError
	if h := pullHint(err); h != "" {
		return h
	}
	switch {
	case force && errors.Is(err, sink.ErrExists):
		return " (use --force to replace it)"
	case force && errors.Is(err, sink.ErrNotExport):
		return ": --force replaces only those"
	case errors.As(err, &cfg) && cfg.Err != nil:
		return " (--db, DATABASE_URL or PG* variables)"
	case errors.As(err, &cfg):
		return " (--db, DATABASE_URL)"
	case errors.As(err, &conn) && conn.Unconfigured:
		return " (nothing was configured: give --db postgres://HOST:PORT/DATABASE or set DATABASE_URL)"
	case errors.As(err, &failed):
		return " (fhirbulk status " + failed.ID + ")"
	case errors.As(err, &otherDB) && otherDB.FromExport:
		return ": to load it into this one, import the export without --resume (each database gets an import of its own), or use --force (everything loads again)"
	case errors.As(err, &otherDB):
		return ": to load it into this one, give the manifest another id, or use --force (everything loads again)"
	case errors.As(err, &finished):
		return " (use --force to load it all again)"
	case errors.As(err, &otherInputs):
		return ": give the manifest another id, or use --force"
	case errors.As(err, &order):
		return " (--no-order-check to import it anyway)"
	case errors.As(err, &manifest) && manifest.Outside:
		return " (--allow-outside to read it)"
	case errors.Is(err, bulkimport.ErrNoStateDir):
		return ": set --state-dir, FHIRBULK_STATE_DIR or HOME"
	case errors.As(err, &dup):
		return " for --format " + dup.Format
	case errors.As(err, &tooLong):
		return " (--max-line-size)" // convert's: load's and import's are in the line's reason (lineWords)
	}
	return ""
}

// message is err as the one line a person is shown, with its hint (force:
// the command has --force).
func message(err error, force bool) string {
	return errorLine(err) + flagHint(err, force)
}

// lineWords words the facts of a bad line that load and import tell in its
// reason, with the flags that bear on them (load.Options.Words): "" keeps
// the fact's own words. Only the facts themselves are worded, not errors
// that wrap them (whose words would be lost).
func lineWords(fact error) string {
	switch e := fact.(type) {
	case *load.TooManyBadLinesError:
		return fmt.Sprintf("more than --max-errors %d bad lines", e.Max)
	case *load.UnknownTypeError:
		return e.Error() + " (--new-type makes its table)"
	case *load.NoTypeError:
		return e.Error() + " (give --type for single-type sources)"
	case *load.OtherTypeError:
		return fmt.Sprintf("resourceType %q is not --type %s", e.Name, e.Type)
	case *load.VersionError:
		if e.Deletion {
			return e.Error() + " (drop --preserve-meta to delete it as a new version)"
		}
		return e.Error() + " (drop --preserve-meta to store it as a new version)"
	case *ndjson.TooLongError:
		return e.Error() + " (--max-line-size)"
	case *store.TxidTooLargeError:
		return fmt.Sprintf("meta.versionId %s is above %d, the largest txid --preserve-meta keeps (it would move the shared transaction_id_seq for good)", e.Value, int64(store.MaxPreservedTxid))
	}
	return ""
}

// loadFormatHint says what to do about a load's source found in the other
// format than --fhir says.
func loadFormatHint(found fhirformat.Format) string {
	if found == fhirformat.FHIR {
		return "use --fhir"
	}
	return "drop --fhir"
}

// importFormatHint says what to do about an import's input found in the
// other format than the one it was taken for.
func importFormatHint(found fhirformat.Format) string {
	if found == fhirformat.FHIR {
		return "use --fhir (or the manifest's inputFormat: application/fhir+ndjson)"
	}
	return "use --aidbox"
}

// convertFormatHint says what to do about convert's input found in the
// format converted to already.
func convertFormatHint(found fhirformat.Format) string {
	if found == fhirformat.FHIR {
		return "use --to aidbox"
	}
	return "use --to fhir"
}
