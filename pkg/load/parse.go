package load

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// lineParser turns one ndjson line into the resource to store: it checks
// the line, converts FHIR input, finds id, resourceType and meta with the
// byte scanner, and splices the stored JSON (buildResource). It keeps its
// buffers from line to line.
type lineParser struct {
	typ   string // --type, or "" to route by resourceType
	merge *Merge
	strip bool
	// dec takes the line's meta out into columns (FHIR, --preserve-meta)
	// and builds the resource to store; it holds the scratch for meta and
	// for a resource longer than the line.
	dec     store.Decoder
	conv    *fhirformat.Converter // FHIR input: converted to Aidbox format first (nil: none)
	check   *fhirformat.Checker   // the format check (nil: none)
	checkTo int64                 // the last line it looks at
	checked bool                  // a line showed the right format: no more checks
	hint    func(fhirformat.Format) string
	keys    []string          // the top-level keys looked for: id, resourceType, meta, --merge's
	names   map[string]string // resourceType names seen and checked
	// What was told of the line before it failed (for BadLine).
	badID, badType string
	tables         map[string]string // their table names, to the name first seen
	// checkType, when set, refuses a resourceType name (once per name;
	// Options.OnlyKnownTypes); refused keeps its answers.
	checkType func(t string) error
	refused   map[string]error
	say       func(fact error) string // Options.say

	// The line compacted (in place: it is the line reader's buffer, or
	// fhirOut) and, for FHIR input, the line as given compacted (in place).
	compact, fhirIn []byte
	spans           []ndjson.Span

	// Scratch, reused for every line (up to keepScratch bytes each).
	fhirOut []byte
	id      []byte // the line's id, out of the way of the resource built over it
}

// reset returns the parser for options o, keeping p's buffers (and its
// FHIR converter).
func (p lineParser) reset(o Options) lineParser {
	q := lineParser{
		typ: o.Type, merge: o.Merge, strip: o.StripNulls,
		dec:     store.Decoder{FHIR: o.FHIR, Preserve: o.PreserveMeta, Meta: reuse(p.dec.Meta), Res: reuse(p.dec.Res)},
		keys:    slices.Clone(store.Keys[:]),
		fhirOut: reuse(p.fhirOut), id: reuse(p.id),
	}
	q.say = o.say
	if o.Merge != nil {
		q.keys = append(q.keys, o.Merge.keys...)
	}
	q.spans = make([]ndjson.Span, len(q.keys))
	if o.FHIR {
		q.conv = p.conv
		if q.conv == nil {
			q.conv = fhirformat.New(fhirformat.ToAidbox)
		}
	}
	if o.FormatCheck > 0 {
		want := fhirformat.Aidbox
		if o.FHIR {
			want = fhirformat.FHIR
		}
		q.check, q.checkTo, q.hint = p.check, o.FormatCheck, o.FormatHint
		if q.check == nil || q.check.Want() != want {
			q.check = fhirformat.NewChecker(want)
		}
		if q.hint == nil {
			q.hint = func(fhirformat.Format) string { return "" }
		}
	}
	return q
}

// checkFormat fails line n, just parsed into r, when it is in the other
// format than the load's. It looks at lines until one shows the right
// format, or up to line checkTo in data that shows neither.
func (s *lineParser) checkFormat(n int64, r resource) error {
	if s.check == nil || s.checked || n > s.checkTo {
		return nil
	}
	in := s.compact // the line as given, compacted
	if s.conv != nil {
		in = s.fhirIn
	}
	path, err := s.check.Misfit(in, r.typ)
	if err != nil || path == "" {
		s.checked = err == nil && s.check.Right()
		return nil // JSON it cannot split was parsed fine: not its concern
	}
	found := fhirformat.FHIR
	if s.check.Want() == fhirformat.FHIR {
		found = fhirformat.Aidbox
	}
	return &fhirformat.FormatError{Line: n, Found: found, Path: path, Hint: s.hint(found)}
}

// typeName returns the resourceType name as a string, checked once per
// distinct name: a multi-type source repeats a few names millions of times,
// and neither the regexp nor a string allocation belongs on every line.
// Two names that differ only in case are refused: they would share a table.
func (s *lineParser) typeName(name []byte) (string, error) {
	if t, ok := s.names[string(name)]; ok {
		return t, nil
	}
	t := string(name)
	if err := store.ValidateType(t); err != nil {
		var bad *store.TypeNameError
		if errors.As(err, &bad) {
			return "", fmt.Errorf("resourceType %q: %s", bad.Type, bad.Problem)
		}
		return "", err
	}
	if err, ok := s.refused[t]; ok {
		return "", err
	}
	if s.checkType != nil {
		if err := s.checkType(t); err != nil {
			if _, ok := err.(notTheLine); !ok {
				if s.refused == nil {
					s.refused = map[string]error{}
				}
				s.refused[t] = err
			}
			return "", err
		}
	}
	if s.names == nil {
		s.names = map[string]string{}
		s.tables = map[string]string{}
	}
	if other, ok := s.tables[store.TableName(t)]; ok {
		return "", fmt.Errorf("resourceType %q and %q (an earlier line) would share the table %s: type names are case-sensitive", t, other, store.Table(t))
	}
	s.names[t] = t
	s.tables[store.TableName(t)] = t
	return t, nil
}

// notTheLine is an error of encodeLine's that is not about the line's content
// (fetching txids failed, say), so it is not reported with a line number.
type notTheLine struct{ err error }

func (e notTheLine) Error() string { return e.err.Error() }

// resource is a line made ready to store: its type, id, the columns its
// meta sets (createdAt always; versionId and lastUpdated with
// --preserve-meta) and the JSON to store.
type resource struct {
	typ  string
	id   []byte
	meta store.Cols
	body []byte
}

// parse checks line n and makes the resource to store, over the line's
// bytes (see encoder); its slices are valid until the next line.
func (s *lineParser) parse(line []byte, n int64) (resource, error) {
	if len(line) > keepScratch {
		defer s.forgetLine()
	}
	var r resource
	s.badID, s.badType = "", s.typ
	if bytes.IndexByte(line, 0) >= 0 {
		return r, errors.New("contains a NUL byte")
	}
	if !utf8.Valid(line) {
		return r, errors.New("not valid UTF-8")
	}
	var err error
	if s.conv != nil {
		if s.fhirIn, err = ndjson.CompactObject(line[:0], line, nil, nil); err == nil {
			s.fhirOut, err = s.conv.ResourceOfType(s.fhirOut[:0], s.fhirIn, s.typ)
		}
		line = s.fhirOut
	}
	if err == nil {
		s.compact, err = ndjson.CompactObject(line[:0], line, s.keys, s.spans)
	}
	if err != nil {
		return r, errors.New(ndjson.LineReason(err))
	}
	if id, ok := ndjson.Unquote(s.member(store.KeyID)); ok {
		s.badID = string(id) // for the error of a line that fails below
	}
	if r.typ, err = s.lineType(s.member(store.KeyResourceType)); err != nil {
		return r, err
	}
	s.badType = r.typ
	if r.id, err = lineID(s.member(store.KeyID)); err != nil {
		return r, err
	}
	if hasNULEscape(s.compact) {
		return r, errors.New(`invalid JSON: it holds \u0000, which PostgreSQL's jsonb cannot store`)
	}
	if err := s.checkFormat(n, r); err != nil {
		return r, err // before buildResource, which writes over s.compact
	}
	s.id = append(s.id[:0], r.id...)
	r.id = s.id
	meta := s.member(store.KeyMeta)
	if s.merge != nil && s.merge.meta != nil {
		meta = s.merge.meta
	}
	r.body, r.meta, err = s.buildResource(meta)
	return r, err
}

// forgetLine gives the parser a new FHIR converter and format checker
// after a long line: their scratch holds slices of the lines they read,
// which would keep the line's buffer alive (for the rest of the load, when
// no later line is as deep or as wide).
func (s *lineParser) forgetLine() {
	if s.conv != nil {
		s.conv = fhirformat.New(fhirformat.ToAidbox)
	}
	if s.check != nil {
		s.check = fhirformat.NewChecker(s.check.Want())
	}
}

// hasNULEscape reports whether the JSON text holds the escape \u0000
// (a backslash before it that is itself escaped does not count).
func hasNULEscape(j []byte) bool {
	for from := 0; ; {
		i := bytes.Index(j[from:], []byte(`\u0000`))
		if i < 0 {
			return false
		}
		i += from
		bs := 0
		for k := i - 1; k >= 0 && j[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return true
		}
		from = i + 1
	}
}

// member is the value of the top-level member keys[k] of s.compact, or nil.
func (s *lineParser) member(k int) []byte { return store.Value(s.compact, s.spans[k]) }

// lineID checks the value of a line's "id".
func lineID(raw []byte) ([]byte, error) {
	id, ok := ndjson.Unquote(raw)
	switch {
	case !ok && len(raw) > 0 && raw[0] == '"':
		return nil, errors.New(`"id" holds an escape that is not Unicode text (a lone surrogate such as \ud800?)`)
	case ok && len(id) == 0:
		return nil, errors.New(`"id" is empty`)
	case !ok:
		return nil, errors.New(`no string "id"`)
	case len(id) > MaxIDBytes:
		return nil, fmt.Errorf(`"id" is %d bytes long: at most %d`, len(id), MaxIDBytes)
	case bytes.IndexByte(id, 0) >= 0:
		return nil, errors.New(`"id" contains a NUL character (\u0000), which PostgreSQL text cannot hold`)
	}
	return id, nil
}

// lineType is the type of a line whose "resourceType" is raw (nil when it
// has none): --type, which it must equal when given, or raw.
func (s *lineParser) lineType(raw []byte) (string, error) {
	if raw == nil {
		if s.typ == "" {
			return "", &NoTypeError{}
		}
		return s.typ, nil
	}
	name, ok := ndjson.Unquote(raw)
	switch {
	case !ok:
		return "", errors.New(`"resourceType" is not a string`)
	case s.typ != "" && string(name) != s.typ:
		return "", &OtherTypeError{Name: string(name), Type: s.typ}
	case s.typ != "":
		return s.typ, nil
	}
	return s.typeName(name)
}

// buildResource makes the stored resource from s.compact, over it (meta,
// when it is a member of s.compact, is read before): every member but id,
// resourceType, meta and the --merge keys, then meta without the members
// the columns own, then the --merge members (store.Decoder.Resource); then
// --strip-nulls. It returns the columns meta sets.
func (s *lineParser) buildResource(meta []byte) ([]byte, store.Cols, error) {
	var merged []byte
	if s.merge != nil {
		merged = s.merge.members
	}
	r, cols, err := s.dec.Resource(s.compact, s.spans, meta, merged)
	if err != nil {
		return nil, cols, err
	}
	if s.strip {
		if r, err = ndjson.AppendStripNulls(r[:0], r); err != nil {
			return nil, cols, errors.New("not a JSON object")
		}
	}
	return r, cols, nil
}

// MaxIDBytes is the longest id a load takes: PostgreSQL's btree index on
// id (and on id, txid in _history) refuses keys of about 2.7 kB and more.
const MaxIDBytes = 2048
