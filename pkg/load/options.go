package load

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
)

// Options are the load flags.
type Options struct {
	Type       string // every line is of this type; "" routes by resourceType
	History    bool   // copy replaced versions to <table>_history
	StripNulls bool   // drop object members whose value is null, at any depth
	Merge      *Merge // shallow-merged into every resource (nil: none)
	FHIR       bool   // input in FHIR format, converted to Aidbox format on the way in
	// PreserveMeta: meta.versionId sets txid and meta.lastUpdated sets ts
	// (each when present and valid), and transaction_id_seq is moved past
	// the largest txid stored: an export restored exactly.
	PreserveMeta bool
	// MaxErrors is how many bad lines a source may skip (0: none, the
	// first fails it); the next one fails it, as ever, nothing committed.
	MaxErrors int
	// ExpectCount, when set, is how many resources the source must hold (a
	// manifest's count): another number fails it, nothing committed.
	ExpectCount *int64
	// MaxLineSize bounds a line's length in bytes (0: no bound); a longer
	// line is an error naming it.
	MaxLineSize int
	// FormatCheck is how many lines of each source, at the most, are
	// checked for the other format (FHIR lines in an Aidbox-format load, or
	// the reverse): the first such line fails the source with a
	// *fhirformat.FormatError (0: no check). The check ends at the first
	// line that shows the right format.
	FormatCheck int64
	// OnlyKnownTypes refuses a type that is neither an R4 type nor has a
	// table: a line of such a resourceType is a bad line (a typo such as
	// Patinet would otherwise make a table of its own). It does not apply
	// to Type (the caller checks it) nor to a dry run (which knows no
	// tables).
	OnlyKnownTypes bool
	// FormatHint, when set, says what to do about a source found in format
	// found (the *fhirformat.FormatError's Hint).
	FormatHint func(found fhirformat.Format) string
	// Words, when set, words a fact of a bad line for a person, in the
	// caller's terms (its flags), or returns "" to keep the fact's own: it
	// is asked about *TooManyBadLinesError, *UnknownTypeError,
	// *NoTypeError, *OtherTypeError, *VersionError and *store.TxidTooLargeError,
	// when the line's reason is made (the reason is text from then on: an
	// errors file, a state file).
	Words func(fact error) string
}

// say is fact as a bad line's reason tells it: in o.Words', else its own.
func (o *Options) say(fact error) string {
	if o.Words != nil {
		if w := o.Words(fact); w != "" {
			return w
		}
	}
	return fact.Error()
}

// Merge is a parsed --merge object.
type Merge struct {
	members []byte   // `,"k":v,...` as appended after a resource's members
	keys    []string // its top-level keys other than meta
	meta    []byte   // its meta value, when it sets meta
}

// ParseMerge reads a --merge value: a JSON object that may not set id or
// resourceType.
func ParseMerge(s string) (*Merge, error) {
	if !json.Valid([]byte(s)) {
		return nil, errors.New("not valid JSON")
	}
	var keys []string
	compact, err := ndjson.CompactObject(nil, []byte(s), nil, nil)
	if err != nil {
		return nil, errors.New("not a JSON object")
	}
	if err := storableEscapes(compact); err != nil {
		return nil, err
	}
	m := &Merge{}
	seen := map[string]bool{}
	var bad error
	err = ndjson.Members(compact, func(key, value []byte) bool {
		text, ok := ndjson.KeyText(key) // CompactObject made it canonical; this is what it spells
		if !ok {
			bad = fmt.Errorf("key %q is not valid text", key)
			return false
		}
		k := string(text)
		if seen[k] {
			bad = fmt.Errorf("key %q given twice", k)
			return false
		}
		seen[k] = true
		switch k {
		case "id", "resourceType":
			bad = fmt.Errorf("cannot set %q", k)
			return false
		case "meta":
			m.meta = append([]byte{}, value...)
			return true
		}
		keys = append(keys, k)
		m.members = ndjson.AppendMember(append(m.members, ','), key, value)
		return true
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, errors.New("not a JSON object")
	}
	m.keys = keys
	return m, nil
}

// storableEscapes refuses the \u escapes of JSON text j that PostgreSQL's
// jsonb will not store: \u0000, and a surrogate that is not half of a
// pair (a line holding them is a bad line; in --merge, every line would
// be).
func storableEscapes(j []byte) error {
	if hasNULEscape(j) {
		return errors.New(`it holds \u0000, which PostgreSQL's jsonb cannot store`)
	}
	lone := errors.New(`it holds a lone surrogate escape (\ud800-\udfff not in a pair), which PostgreSQL's jsonb refuses`)
	high := false // the escape before was a high surrogate: a low one must follow
	for i := 0; i < len(j); i++ {
		if j[i] != '\\' {
			if high {
				return lone
			}
			continue
		}
		i++ // the escaped character
		if i+4 < len(j) && j[i] == 'u' {
			v, err := strconv.ParseUint(string(j[i+1:i+5]), 16, 16)
			if err != nil {
				return errors.New("not valid JSON")
			}
			i += 4
			isHigh, isLow := v >= 0xd800 && v < 0xdc00, v >= 0xdc00 && v < 0xe000
			if high != isLow {
				return lone
			}
			high = isHigh
			continue
		}
		if high {
			return lone
		}
	}
	if high {
		return lone
	}
	return nil
}
