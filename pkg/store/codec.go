package store

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
)

// The row codec. A row is (id, txid, ts, cts, resource); its line is the
// resource with "resourceType" and "id" first and a "meta" whose versionId,
// lastUpdated and createdAt come from txid, ts and cts. The columns own
// those three members and the top-level id and resourceType: a line's are
// taken out of what is stored, and a stored resource's (which Aidbox never
// writes) are dropped rather than written twice. FHIR has no
// meta.createdAt: in FHIR format it travels as the meta extension
// {"url":"ex:createdAt","valueInstant":...}, as Aidbox writes it.

// Keys are the top-level members of a line that the columns own, in the
// order of the KeyID, KeyResourceType and KeyMeta indexes: look them up with
// ndjson.CompactObject (a caller may add keys of its own after them).
var Keys = [...]string{KeyID: "id", KeyResourceType: "resourceType", KeyMeta: "meta"}

// Indexes into Keys (and the spans found for them).
const (
	KeyID = iota
	KeyResourceType
	KeyMeta
	NumKeys // the number of Keys
)

// metaOwned are the members of meta that the columns own: never stored in
// resource, always written from the columns.
var metaOwned = [...]string{"versionId", "lastUpdated", "createdAt"}

// metaOwnedQuoted are metaOwned as JSON strings, for a byte search of
// compact text.
var metaOwnedQuoted = func() (q [len(metaOwned)][]byte) {
	for i, k := range metaOwned {
		q[i] = []byte(`"` + k + `"`)
	}
	return q
}()

// CreatedAtURL is the url of the meta extension that carries createdAt in
// FHIR format.
const CreatedAtURL = "ex:createdAt"

var (
	createdAtItemStart = []byte(`{"url":"` + CreatedAtURL + `","valueInstant":"`)
	createdAtItemURL   = []byte(`"url":"` + CreatedAtURL + `"`)
	createdAtURLString = []byte(`"` + CreatedAtURL + `"`)
)

// Value is the value of the member of compact (text made by
// ndjson.CompactObject) that sp spans, or nil when it was not found.
func Value(compact []byte, sp ndjson.Span) []byte {
	if !sp.Found() {
		return nil
	}
	v := compact[sp.Start:sp.End]
	return v[bytes.IndexByte(v[1:], '"')+3:] // skip "key": (CompactObject wrote the key canonically)
}

// Row is a stored row as a binary COPY gives it: ID as text, TS and CTS as
// binary timestamptz (nil: NULL), Resource as JSON text (jsonb's output or
// any JSON object).
type Row struct {
	ID       []byte
	Txid     int64
	TS, CTS  []byte
	Resource []byte
}

// BadResourceError is a row whose resource cannot be made a line (it is not
// one JSON object, or it has a member twice).
type BadResourceError struct{ Err error }

func (e *BadResourceError) Error() string { return e.Err.Error() }
func (e *BadResourceError) Unwrap() error { return e.Err }

// Encoder makes the lines of one type's rows (the dump direction). It
// reuses its buffers, so one Encoder serves one goroutine.
type Encoder struct {
	fhir    bool
	prefix  []byte // {"resourceType":"T","id":
	compact []byte // the stored resource, compacted
	spans   [NumKeys]ndjson.Span
	created []byte // the ex:createdAt extension item (FHIR)
	ts, cts instants
}

// instants remembers the text of the last timestamptz it wrote: the rows
// of one load share their ts and cts (a load stamps its rows with one
// now()), so most rows of a dump repeat the row before's, and formatting
// two instants a row was a tenth of dump's CPU.
type instants struct {
	raw  [8]byte
	text []byte // nil: nothing remembered
}

// append appends the binary timestamptz f as pg.AppendTimestamptz does.
func (c *instants) append(b, f []byte) ([]byte, error) {
	if c.text != nil && len(f) == len(c.raw) && string(f) == string(c.raw[:]) {
		return append(b, c.text...), nil
	}
	start := len(b)
	b, err := pg.AppendTimestamptz(b, f)
	if err == nil && len(f) == len(c.raw) {
		copy(c.raw[:], f)
		c.text = append(c.text[:0], b[start:]...)
	}
	return b, err
}

// NewEncoder returns the encoder of type typ's rows; fhir says the
// resources are in FHIR format (createdAt goes in a meta extension).
func NewEncoder(typ string, fhir bool) *Encoder {
	e := &Encoder{fhir: fhir}
	e.prefix = append(e.prefix, `{"resourceType":`...)
	e.prefix = ndjson.AppendString(e.prefix, []byte(typ))
	e.prefix = append(e.prefix, `,"id":`...)
	return e
}

// AppendLine appends the line of row r to b, without a newline: the stored
// resource compacted, the columns spliced in, with no JSON decoding.
// r.Resource must be a JSON object (its first byte '{'); one that does not
// compact is a *BadResourceError.
func (e *Encoder) AppendLine(b []byte, r Row) ([]byte, error) {
	var err error
	// Stored text is jsonb's: CompactJSONB drops its spaces at near copy
	// speed, and takes anything else as CompactObject does.
	e.compact, err = ndjson.CompactJSONB(e.compact[:0], r.Resource, Keys[:], e.spans[:])
	if err != nil {
		return b, &BadResourceError{err}
	}
	b = append(b, e.prefix...)
	b = ndjson.AppendString(b, r.ID)
	b = append(b, `,"meta":{"versionId":"`...)
	b = strconv.AppendInt(b, r.Txid, 10)
	b = append(b, '"')
	if r.TS != nil {
		b = append(b, `,"lastUpdated":"`...)
		if b, err = e.ts.append(b, r.TS); err != nil {
			return b, err
		}
		b = append(b, '"')
	}
	var stored []byte
	if meta := e.spans[KeyMeta]; meta.Found() {
		stored = e.compact[meta.Start+len(`"meta":`) : meta.End]
	}
	switch {
	case e.fhir:
		e.created = e.created[:0]
		if r.CTS != nil {
			e.created = append(e.created, createdAtItemStart...)
			if e.created, err = e.cts.append(e.created, r.CTS); err != nil {
				return b, err
			}
			e.created = append(e.created, `"}`...)
		}
		b = appendStoredMeta(b, stored, e.created)
	default:
		if r.CTS != nil {
			b = append(b, `,"createdAt":"`...)
			if b, err = e.cts.append(b, r.CTS); err != nil {
				return b, err
			}
			b = append(b, '"')
		}
		b = appendStoredMeta(b, stored, nil)
	}
	b = append(b, '}')
	b = ndjson.AppendMembersExcept(b, e.compact, e.spans[:]...)
	return append(b, '}'), nil
}

// appendStoredMeta appends the members of the stored meta object (compact)
// after the column-made ones, each preceded by a comma, leaving out any that
// the columns own. A meta that is not an object is not valid FHIR; it is
// replaced by the column-made one. For FHIR output, created is the
// ex:createdAt extension to add to meta.extension (empty: none).
func appendStoredMeta(b, meta, created []byte) []byte {
	if len(meta) <= 2 || meta[0] != '{' {
		meta = nil
	}
	owned := false
	for _, k := range metaOwnedQuoted {
		if bytes.Contains(meta, k) {
			owned = true
			break
		}
	}
	fhir := created != nil
	if fhir && bytes.Contains(meta, []byte(`"extension"`)) {
		owned = true
	}
	if !owned {
		if meta != nil {
			b = append(b, ',')
			b = append(b, meta[1:len(meta)-1]...)
		}
		if len(created) > 0 {
			b = append(b, `,"extension":[`...)
			b = append(b, created...)
			b = append(b, ']')
		}
		return b
	}
	// Rare: walk the members and skip the owned ones.
	extended := false
	ndjson.Members(meta, func(key, value []byte) bool { // meta is compact jsonb output
		for _, k := range metaOwned {
			if string(key) == k {
				return true
			}
		}
		b = ndjson.AppendKey(append(b, ','), key)
		if fhir && string(key) == "extension" && len(value) > 0 && value[0] == '[' {
			b = appendExtensions(b, value, created)
			extended = true
			return true
		}
		b = append(b, value...)
		return true
	})
	if len(created) > 0 && !extended {
		b = append(b, `,"extension":[`...)
		b = append(b, created...)
		b = append(b, ']')
	}
	return b
}

// appendExtensions appends the extension array arr without any stale
// ex:createdAt item, and created at its end.
func appendExtensions(b, arr, created []byte) []byte {
	b = append(b, '[')
	n := 0
	ndjson.Elements(arr, func(item []byte) { // compact jsonb output
		if bytes.Contains(item, createdAtItemURL) {
			return
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, item...)
	})
	if len(created) > 0 {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, created...)
	}
	return append(b, ']')
}

// Cols are the columns a line's meta sets: cts from createdAt, and when
// preserving meta txid from versionId and ts from lastUpdated (nil or 0:
// not set, the load decides).
type Cols struct {
	CTS, TS *time.Time
	Txid    int64
}

// Decoder takes lines apart into the columns and the resource to store
// (the load direction). Set its fields before use; it reuses its buffers
// from line to line, so one Decoder serves one goroutine.
type Decoder struct {
	FHIR bool // lines in FHIR format (converted to Aidbox's): createdAt is the ex:createdAt extension
	// Preserve makes versionId and lastUpdated set txid and ts
	// (--preserve-meta); without it they are dropped.
	Preserve bool
	// NotAfter, when set, is the latest lastUpdated Preserve takes.
	NotAfter time.Time

	Meta []byte // scratch: the meta as stored
	Res  []byte // scratch: the resource, when it is longer than the line
}

// Resource makes the resource to store from compact, a line compacted by
// ndjson.CompactObject with spans found for Keys (and for any further keys
// of the caller's, whose members are left out too), over compact: every
// member but those, then meta (the line's, or one given instead; nil: none)
// without the members the columns own (dropped when nothing else is left),
// then extra (members, each preceded by a comma). It returns the columns
// meta sets. The result is valid until the next call.
func (d *Decoder) Resource(compact []byte, spans []ndjson.Span, meta, extra []byte) ([]byte, Cols, error) {
	var cols Cols
	m := d.Meta[:0]
	if meta != nil {
		var err error
		if m, cols, err = d.appendMeta(m, meta); err != nil {
			return nil, cols, err
		}
	}
	d.Meta = m
	r := ndjson.RemoveMembers(compact, spans...)
	own := len(r)+len(m)+len(extra) > len(compact)
	if own {
		// Longer than the line (extra members): past its end may lie
		// the reader's unread input.
		r = append(d.Res[:0], r...)
	}
	r = r[:len(r)-1]
	for _, more := range [2][]byte{m, extra} {
		if len(r) == 1 && len(more) > 0 {
			more = more[1:] // the first member: no comma
		}
		r = append(r, more...)
	}
	r = append(r, '}')
	if own {
		d.Res = r
	}
	return r, cols, nil
}

// appendMeta appends `,"meta":{...}` without the members the columns own,
// or nothing when no other member is left. A meta that is not an object is
// kept as it is. Its createdAt (Aidbox) or, for FHIR input, its
// ex:createdAt extension is returned as cts and not stored.
func (d *Decoder) appendMeta(r, meta []byte) ([]byte, Cols, error) {
	if len(meta) == 0 || meta[0] != '{' {
		r = append(r, `,"meta":`...)
		return append(r, meta...), Cols{}, nil
	}
	var cols Cols
	var err error
	start := len(r)
	r = append(r, `,"meta":{`...)
	first := true
	merr := ndjson.Members(meta, func(key, value []byte) bool {
		name := key
		if text, ok := ndjson.KeyText(key); ok {
			name = text // "\u0076ersionId" is versionId
		}
		for _, k := range metaOwned {
			if string(name) == k {
				switch {
				case k == "createdAt":
					cols.CTS, err = parseInstant(value)
				case d.Preserve && k == "versionId":
					cols.Txid, err = ParseVersionID(value)
				case d.Preserve && k == "lastUpdated":
					cols.TS, err = PreservedInstant(value, d.NotAfter)
				}
				return err == nil
			}
		}
		if d.FHIR && string(name) == "extension" && bytes.Contains(value, createdAtURLString) {
			var kept []byte
			if kept, cols.CTS, err = takeCreatedAt(value); err != nil {
				return false
			}
			if kept == nil {
				return true
			}
			value = kept
		}
		if !first {
			r = append(r, ',')
		}
		first = false
		r = ndjson.AppendMember(r, key, value)
		return true
	})
	if merr != nil {
		return nil, cols, errors.New("not a JSON object")
	}
	if err != nil {
		return nil, cols, err
	}
	if first {
		return r[:start], cols, nil
	}
	return append(r, '}'), cols, nil
}

// takeCreatedAt takes the {"url":"ex:createdAt","valueInstant":...} item
// out of a meta.extension array: it returns the array without it (nil when
// nothing is left) and its instant.
func takeCreatedAt(arr []byte) ([]byte, *time.Time, error) {
	var cts *time.Time
	var err error
	kept := []byte{'['}
	eerr := ndjson.Elements(arr, func(item []byte) {
		isCreated := false
		var value []byte
		ndjson.Members(item, func(k, v []byte) bool { // not an object: kept as it is
			if text, ok := ndjson.KeyText(k); ok {
				k = text
			}
			switch string(k) {
			case "url":
				u, ok := ndjson.Unquote(v)
				isCreated = ok && string(u) == CreatedAtURL
			case "valueInstant", "valueDateTime":
				value = v
			}
			return true
		})
		if isCreated && value != nil && err == nil {
			cts, err = parseInstant(value)
			return
		}
		if len(kept) > 1 {
			kept = append(kept, ',')
		}
		kept = append(kept, item...)
	})
	if eerr != nil {
		return nil, nil, errors.New("not a JSON object")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("meta extension %s: %w", CreatedAtURL, err)
	}
	if len(kept) == 1 {
		return nil, cts, nil
	}
	return append(kept, ']'), cts, nil
}

// Instants outside years 0001–9999 in UTC are refused: dump writes UTC,
// and a year of five digits (9999-12-31T23:00:00-05:00 is in 10000) is not
// RFC 3339, so it would not load again.
var (
	minInstant = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxInstant = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxPreservedTxid is the largest meta.versionId --preserve-meta keeps as
// a txid: 2^53-1, the largest integer every JSON reader (JavaScript's
// Number) holds exactly. transaction_id_seq is shared by every table and
// never goes back: one stray versionId (999999999999999999) would move it
// for good, so a larger one is a bad line rather than a silent jump.
const MaxPreservedTxid = 1<<53 - 1

// ParseVersionID reads meta.versionId as a txid: a string of decimal
// digits, 1 to MaxPreservedTxid. Another string (servers that spell
// versions otherwise: "W/1", base64) or another JSON value gives 0 (not
// preserved: the row gets a txid of its own); digits above the bound are
// an error.
func ParseVersionID(v []byte) (int64, error) {
	s, ok := ndjson.Unquote(v)
	if !ok || len(s) == 0 {
		return 0, nil
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, nil
		}
		if n > (MaxPreservedTxid-int64(c-'0'))/10 {
			return 0, &TxidTooLargeError{Value: ndjson.Clip(string(v))}
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// TxidTooLargeError is a meta.versionId above MaxPreservedTxid: kept as
// a txid, it would move the shared transaction_id_seq for good.
type TxidTooLargeError struct{ Value string }

func (e *TxidTooLargeError) Error() string {
	return fmt.Sprintf("meta.versionId %s is above %d, the largest txid kept (it would move the shared transaction_id_seq for good)", e.Value, int64(MaxPreservedTxid))
}

// LastUpdatedSlack is how far past the server's clock (its now() when the
// source starts) a preserved lastUpdated may be: clocks of two servers
// differ a little. A later one is refused: every incremental export (ts >=
// watermark) would find that row again until then.
const LastUpdatedSlack = time.Minute

// PreservedInstant reads meta.lastUpdated for --preserve-meta: nil (not
// preserved) when it is not a valid instant, an error when it is later
// than notAfter (when set).
func PreservedInstant(v []byte, notAfter time.Time) (*time.Time, error) {
	t, err := parseInstant(v)
	if err != nil {
		return nil, nil // only when valid, as the flag says
	}
	if !notAfter.IsZero() && t.After(notAfter) {
		return nil, fmt.Errorf("meta.lastUpdated %s is in the future (the server's clock says %s): every incremental export would find it again until then",
			ndjson.Clip(string(v)), notAfter.Add(-LastUpdatedSlack).UTC().Format(time.RFC3339))
	}
	return t, nil
}

func parseInstant(v []byte) (*time.Time, error) {
	s, ok := ndjson.Unquote(v)
	if ok {
		if t, err := time.Parse(time.RFC3339Nano, string(s)); err == nil {
			if t.Before(minInstant) || !t.Before(maxInstant) {
				return nil, fmt.Errorf("meta.createdAt %s is outside the years 0001–9999 in UTC", ndjson.Clip(string(v)))
			}
			return &t, nil
		}
	}
	return nil, fmt.Errorf("meta.createdAt %s is not an RFC 3339 instant", ndjson.Clip(string(v)))
}
