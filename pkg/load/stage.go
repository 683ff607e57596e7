package load

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/pg"
	"github.com/fhirbulk/fhirbulk/pkg/store"
)

// encoder turns a source's ndjson lines into the data of a binary COPY (it
// is the copyIn reader that pgconn's CopyFrom pulls): it reads the lines,
// checks and splices each with the byte scanner (lineParser), and encodes
// them as rows of the staging table (rtype, n, id, cts, txid, ts, resource)
// or, in direct mode, as rows in the final form of the type's table.
//
// A line of a type that has no staging partition yet ends the current COPY
// (the tuple is kept in pending); the caller creates the partition, calls
// admit and runs the next COPY, which starts with that tuple.
//
// A line is held once: it is compacted and made into the resource to store
// in the line reader's buffer, and a long resource goes to CopyFrom from
// there (tail) rather than through out. A 190 MB line was held four times
// (the line, its compact form, the resource, the COPY data), and those
// buffers were kept from source to source.
type encoder struct {
	lineParser
	in *ndjson.LineReader

	line     int64            // number of the last line read
	counts   map[string]int64 // lines encoded per type
	known    map[string]bool  // types with a partition
	order    []string         // types in order of first appearance
	newType  string           // a type waiting for its partition
	pending  []byte           // its tuple
	pendTail []byte           // its resource, when a tail (see tail)
	onLine   func(n int64)    // progress, called every 4096 lines (may be nil)
	direct   *direct          // final-form rows straight into the table (typed loads only)
	ids      idHashes         // to tell whether a type has repeated ids
	maxTxid  int64            // the largest txid a line set (--preserve-meta)
	// advance moves transaction_id_seq past a txid (it returns the
	// sequence's value then); advanced is how far it is known to be.
	// Called after each batch of lines, before they reach the server, so
	// that no txid drawn meanwhile equals one the lines preserve.
	advance  func(txid int64) (int64, error)
	advanced int64

	maxErrors int       // bad lines that may be skipped
	bad       []BadLine // those skipped

	// The COPY data (its tail: a long resource where parse built it); err
	// is why staging stopped, when it did on bad input or a read error.
	copyIn
	eof bool // the input is exhausted
}

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

	// The line compacted (in place: it is the line reader's buffer, or
	// fhirOut) and, for FHIR input, the line as given compacted (in place).
	compact, fhirIn []byte
	spans           []ndjson.Span

	// Scratch, reused for every line (up to keepScratch bytes each).
	fhirOut []byte
	id      []byte // the line's id, out of the way of the resource built over it
}

// keepScratch is the largest buffer an encoder keeps for the next source: one
// that a long line made is let go.
const keepScratch = 4 << 20

// reuse returns b emptied, or nil when it is larger than is kept.
func reuse(b []byte) []byte {
	if cap(b) > keepScratch {
		return nil
	}
	return b[:0]
}

// newEncoder makes the encoder of one source. prev, the encoder of the
// Loader's source before (or nil), lends it its buffers: a load of many
// small sources would otherwise allocate megabytes per source.
func newEncoder(r io.Reader, o Options, prev *encoder) *encoder {
	s := &encoder{
		counts:    map[string]int64{},
		known:     map[string]bool{},
		maxErrors: o.MaxErrors,
	}
	if prev != nil {
		prev.in.Reset(r)
		s.in = prev.in
		s.out, s.pending = reuse(prev.out), reuse(prev.pending)
		s.lineParser = prev.lineParser.reset(o)
	} else {
		s.in = ndjson.NewLineReaderMax(r, o.MaxLineSize)
		s.lineParser = lineParser{}.reset(o)
	}
	s.copyIn.fill = s.fillCopy
	return s
}

// release lets go of what long lines left in s's buffers, at the end of
// its source: the Loader keeps s to lend them to the next source.
func (s *encoder) release() {
	s.out, s.pending = reuse(s.out), reuse(s.pending)
	s.tail, s.pendTail, s.compact, s.fhirIn = nil, nil, nil, nil
	s.fhirOut, s.id, s.dec.Meta, s.dec.Res = reuse(s.fhirOut), reuse(s.id), reuse(s.dec.Meta), reuse(s.dec.Res)
	s.in.Reset(nil) // last: when it lets go of a long line, it collects
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
			q.hint = loadFormatHint
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

// BadLine is a line a load skipped (with --max-errors): its number, the
// id and type of its resource when they could be told, and why.
type BadLine struct {
	Source string // as it may be shown (redacted)
	Line   int64
	ID     string
	Type   string
	Reason string
}

// result is what the encoder encoded, and skipped.
func (s *encoder) result() Result {
	// Lines the server refused were found after the others: in order.
	slices.SortFunc(s.bad, func(a, b BadLine) int { return cmp.Compare(a.Line, b.Line) })
	return Result{Counts: Counts(s.counts), Skipped: s.bad}
}

// skip records the current line as bad and goes on, or, past the limit of
// bad lines, fails with its error.
func (s *encoder) skip(reason, id, typ string) error {
	reason = ndjson.ClipQuoted(reason) // it may quote the line: a name, not a copy
	if len(id) > MaxIDBytes {
		id = ndjson.Clip(id)
	}
	if len(s.bad) >= s.maxErrors {
		if s.maxErrors > 0 {
			reason += fmt.Sprintf(" (more than --max-errors %d bad lines)", s.maxErrors)
		}
		return &ndjson.LineError{Line: s.line, Reason: reason}
	}
	s.bad = append(s.bad, BadLine{Line: s.line, ID: id, Type: typ, Reason: reason})
	return nil
}

// admit records that type t now has a partition and starts the next COPY's
// data: a header, then the tuple that was waiting.
func (s *encoder) admit(t string) {
	s.known[t] = true
	s.newType = ""
	s.start()
	s.out = append(s.out, s.pending...)
	s.tail, s.pendTail = s.pendTail, nil
	s.pending = s.pending[:0]
}

// fillCopy encodes lines into s.out until it holds at least want bytes, the
// input ends, or a line needs a new partition or leaves a tail; then,
// before those lines go anywhere, it moves transaction_id_seq past the
// txids they preserve.
func (s *encoder) fillCopy(want int) error {
	if err := s.encodeLines(want); err != nil {
		return err
	}
	return s.advanceTxids()
}

// advanceTxids moves transaction_id_seq past the largest txid the lines
// read so far preserve (--preserve-meta), when it is not known to be
// there: one round trip per batch of lines that raises it.
func (s *encoder) advanceTxids() error {
	if s.advance == nil || s.maxTxid <= s.advanced {
		return nil
	}
	v, err := s.advance(s.maxTxid)
	if err != nil {
		return err
	}
	s.advanced = max(v, s.maxTxid)
	return nil
}

func (s *encoder) encodeLines(want int) error {
	for len(s.out) < want {
		if s.eof {
			s.end()
			return nil
		}
		// The last line's bytes go now: a long line's buffer is not kept
		// alive beside the next one.
		s.compact, s.fhirIn = nil, nil
		line, err := s.in.Next()
		var tooLong *ndjson.LineError
		switch {
		case err == io.EOF:
			s.eof = true
		case errors.As(err, &tooLong):
			s.line = tooLong.Line
			if err := s.skip(tooLong.Reason, "", ""); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		s.line = s.in.Line()
		if s.onLine != nil && s.line&4095 == 0 {
			s.onLine(s.line)
		}
		if ndjson.IsBlank(line) {
			continue
		}
		t, err := s.encodeLine(line)
		var other notTheLine
		if errors.As(err, &other) {
			return other.err
		}
		var wrong *fhirformat.FormatError
		if errors.As(err, &wrong) {
			return wrong // the whole source, not a bad line
		}
		if err != nil {
			if err := s.skip(err.Error(), s.badID, s.badType); err != nil {
				return err
			}
			continue
		}
		if t != "" { // a new type: end this COPY, its tuple waits in pending
			s.newType = t
			s.end()
			return nil
		}
		if len(s.tail) > 0 {
			return nil // the tail goes first: the next line overwrites it
		}
	}
	return nil
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
		return "", errors.New("resourceType " + strings.TrimPrefix(err.Error(), "bad resource type "))
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

// encodeLine checks one line and appends its tuple to s.out, or to s.pending
// when its type is new (then it returns that type).
func (s *encoder) encodeLine(line []byte) (string, error) {
	r, err := s.parse(line, s.line)
	if err != nil {
		return "", err
	}
	if s.direct == nil { // a direct COPY finds repeated ids itself
		s.ids.add(r.typ, r.id)
	}
	if s.counts[r.typ] == 0 {
		s.order = append(s.order, r.typ)
	}
	s.counts[r.typ]++
	s.maxTxid = max(s.maxTxid, r.meta.Txid)
	switch {
	case s.direct != nil:
		if s.out, s.tail, err = s.direct.appendRow(s.out, r); err != nil {
			return "", notTheLine{err}
		}
	case !s.known[r.typ]:
		s.pending, s.pendTail = appendStageRow(s.pending[:0], r, s.line)
		return r.typ, nil
	default:
		s.out, s.tail = appendStageRow(s.out, r, s.line)
	}
	return "", nil
}

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
			return "", errors.New(`no "resourceType" (give --type for single-type sources)`)
		}
		return s.typ, nil
	}
	name, ok := ndjson.Unquote(raw)
	switch {
	case !ok:
		return "", errors.New(`"resourceType" is not a string`)
	case s.typ != "" && string(name) != s.typ:
		return "", fmt.Errorf("resourceType %q is not --type %s", name, s.typ)
	case s.typ != "":
		return s.typ, nil
	}
	return s.typeName(name)
}

// appendStageRow appends r as a tuple of the staging table:
// (rtype, n, id, cts, txid, ts, resource), the resource's bytes but for a
// tail (see appendResource).
func appendStageRow(b []byte, r resource, line int64) (out, tail []byte) {
	b = pg.AppendTuple(b, 7)
	b = pg.AppendBytes(b, []byte(r.typ))
	b = pg.AppendInt8(b, line)
	b = pg.AppendBytes(b, r.id)
	b = appendTimeOrNull(b, r.meta.CTS)
	if r.meta.Txid > 0 {
		b = pg.AppendInt8(b, r.meta.Txid)
	} else {
		b = pg.AppendNull(b)
	}
	b = appendTimeOrNull(b, r.meta.TS)
	return appendResource(b, r.body, false)
}

// tailMin is the length from which a resource is handed to CopyFrom where
// it lies (copyIn.tail) instead of copied into the COPY data.
const tailMin = 64 << 10

// appendResource appends the field of the resource body: text, or jsonb
// (version 1, as pg.AppendJSONB). A body of tailMin bytes or more is not
// appended but returned as tail, to follow the field's length.
func appendResource(b, body []byte, jsonb bool) (out, tail []byte) {
	if len(body) < tailMin {
		if jsonb {
			return pg.AppendJSONB(b, body), nil
		}
		return pg.AppendBytes(b, body), nil
	}
	if jsonb {
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)+1))
		return append(b, 1), body
	}
	return binary.BigEndian.AppendUint32(b, uint32(len(body))), body
}

func appendTimeOrNull(b []byte, t *time.Time) []byte {
	if t == nil {
		return pg.AppendNull(b)
	}
	return pg.AppendTime(b, *t)
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

// direct encodes rows in the final form of a type's table:
// (id, txid, ts, cts, resource_type, status, resource).
type direct struct {
	now   time.Time // the transaction's now()
	txids *txidBlocks
}

func (d *direct) appendRow(b []byte, r resource) (out, tail []byte, err error) {
	// A preserved txid takes none from the sequence. One the blocks drawn
	// so far may hold (drawn for earlier lines, or by another session
	// before the sequence was moved past it) could be another row's: the
	// staged path draws only after every preserved txid is known.
	txid := r.meta.Txid
	if txid > 0 && txid <= d.txids.maxDrawn {
		return b, nil, errNotDirect
	}
	if txid == 0 {
		if txid, err = d.txids.next(); err != nil {
			return b, nil, err
		}
	}
	cts, ts := d.now, d.now
	if r.meta.CTS != nil {
		cts = *r.meta.CTS
	}
	if r.meta.TS != nil {
		ts = *r.meta.TS
	}
	b = pg.AppendTuple(b, 7)
	b = pg.AppendBytes(b, r.id)
	b = pg.AppendInt8(b, txid)
	b = pg.AppendTime(b, ts)
	b = pg.AppendTime(b, cts)
	b = pg.AppendBytes(b, []byte(r.typ))
	b = pg.AppendBytes(b, statusCreated)
	out, tail = appendResource(b, r.body, true)
	return out, tail, nil
}

var statusCreated = []byte("created")

// txidBlocks hands out values of transaction_id_seq, fetched in growing
// blocks (so a small load does not use up thousands) by fetch.
type txidBlocks struct {
	fetch    func(n int) ([]int64, error)
	have     []int64
	size     int
	maxDrawn int64 // the largest value fetched
}

func (t *txidBlocks) next() (int64, error) {
	if len(t.have) == 0 {
		t.size = min(max(t.size*4, 256), 65536)
		ids, err := t.fetch(t.size)
		if err != nil {
			return 0, err
		}
		t.have = ids
		for _, v := range ids {
			t.maxDrawn = max(t.maxDrawn, v)
		}
	}
	v := t.have[0]
	t.have = t.have[1:]
	return v, nil
}

// idHashes keeps 64-bit hashes of the ids of each type, to tell for sure
// that a type has no repeated id (so the upsert can skip deduplication).
// Its memory is capped: past maxIDHashes ids it stops and answers "maybe".
type idHashes struct {
	seed     maphash.Seed
	byType   map[string][]uint64
	n        int
	overflow bool
}

const maxIDHashes = 2 << 20 // 16 MiB of hashes (twice that while a slice grows)

func (h *idHashes) add(t string, id []byte) {
	if h.overflow {
		return
	}
	if h.byType == nil {
		h.seed = maphash.MakeSeed()
		h.byType = map[string][]uint64{}
	}
	if h.n++; h.n > maxIDHashes {
		h.overflow, h.byType = true, nil
		return
	}
	h.byType[t] = append(h.byType[t], maphash.Bytes(h.seed, id))
}

// unique reports whether type t certainly has no repeated id. A hash
// collision only makes it answer false, never true wrongly.
func (h *idHashes) unique(t string) bool {
	if h.overflow {
		return false
	}
	hs := h.byType[t]
	slices.Sort(hs)
	for i := 1; i < len(hs); i++ {
		if hs[i] == hs[i-1] {
			return false
		}
	}
	return true
}
