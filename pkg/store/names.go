package store

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fhirbulk/fhirbulk/pkg/r4types"
)

// MaxTypeLen is the longest resource type name: the name of its history
// table (the lowercased type and "_history") must fit PostgreSQL's 63-byte
// identifiers, or it would be cut short and two tables would share a name.
const MaxTypeLen = 63 - len("_history")

// typeName is what a resource type name may look like. Its character set
// makes every table name a plain identifier once lowercased; it is still
// always quoted, never formatted into SQL.
var typeName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// ValidateType checks a resource type name before any SQL runs: its
// characters, its length (MaxTypeLen), and its case where it is an R4 type
// (names are case-sensitive, tables are not: "PATIENT" would land in the
// table of Patient).
func ValidateType(t string) error {
	if !typeName.MatchString(t) {
		return &TypeNameError{t, "it must match ^[A-Z][A-Za-z0-9]*$" + DidYouMean(t)}
	}
	if len(t) > MaxTypeLen {
		return &TypeNameError{t, fmt.Sprintf("longer than %d characters (its history table's name would not fit PostgreSQL's 63-byte names)", MaxTypeLen)}
	}
	if r4, ok := r4types.Spelling(t); ok && r4 != t {
		return &TypeNameError{t, fmt.Sprintf("R4 spells it %q (type names are case-sensitive)", r4)}
	}
	return nil
}

// TypeNameError is a resource type name ValidateType refuses: Problem
// says why.
type TypeNameError struct{ Type, Problem string }

func (e *TypeNameError) Error() string {
	return fmt.Sprintf("bad resource type %q: %s", e.Type, e.Problem)
}

// DidYouMean is ", did you mean Patient?" when t is not an R4 type name but
// is close to one (as spelled, or in another case: at most one letter in
// four differs, two at the most), else "".
func DidYouMean(t string) string {
	if s := Suggest(t); s != "" {
		return "; did you mean " + s + "?"
	}
	return ""
}

// Suggest is the R4 type name nearest t (see DidYouMean), or "".
func Suggest(t string) string {
	if r4, ok := r4types.Spelling(t); ok {
		if r4 == t {
			return ""
		}
		return r4
	}
	if len(t) > 64 {
		return ""
	}
	lt := strings.ToLower(t)
	best, bestD := "", min(2, len(t)/4)+1
	for _, name := range r4types.Names() {
		if d := editDistance(lt, strings.ToLower(name)); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of two neighbours that make a into b (optimal string alignment).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// TableName is the name of the table holding resources of type t: the
// lowercased type name, as Aidbox names it.
func TableName(t string) string { return strings.ToLower(t) }

// Table is the quoted identifier of the table holding resources of type t.
func Table(t string) string {
	return pgx.Identifier{TableName(t)}.Sanitize()
}

// HistoryTable is the quoted identifier of the history table of type t.
func HistoryTable(t string) string {
	return pgx.Identifier{TableName(t) + "_history"}.Sanitize()
}
